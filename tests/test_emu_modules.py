"""The module conformance checks of test_modules.py, run again with fusedrnn's modules and functional
API switched to the emulated CUDA backend (fusedrnn.emulation): every forward and backward below
runs the CUDA kernels on the CPU, against torch.nn on the same weights."""
import pytest

import fusedrnn.emulation as emulation
from helpers import require_emulation
from test_modules import *  # noqa: F401,F403  (the tests, collected again here)


@pytest.fixture(autouse=True)
def _emulated():
    require_emulation()
    with emulation.enabled(seed=0):
        yield


def test_the_modules_run_on_the_emulated_kernels():
    import torch

    import fusedrnn

    before = emulation.stats()["launches"]
    fusedrnn.GRU(3, 5)(torch.randn(4, 2, 3))
    fusedrnn.LSTMCell(3, 5)(torch.randn(2, 3))
    assert emulation.stats()["launches"] - before == 4 + 1  # a pointwise kernel per step
