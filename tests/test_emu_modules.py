"""The module conformance checks of test_modules.py, run again with fusedrnn's modules and functional
API switched to the emulated CUDA backend (fusedrnn.emulation): every forward and backward below
runs the CUDA kernels on the CPU, against torch.nn on the same weights."""
import pytest

import fusedrnn.emulation as emulation
from helpers import require_emulation
from test_modules import *  # noqa: F401,F403  (the tests, collected again here)


@pytest.fixture(autouse=True, params=["standard", "persistent"])
def cuda_path(request, monkeypatch):
    """Each test on both paths of the CUDA backend: a kernel per step, and one persistent launch per
    layer and direction (float64 and projections stay on the standard path in both)."""
    require_emulation()
    monkeypatch.setenv("FUSEDRNN_CUDA_PATH", request.param)
    with emulation.enabled(seed=0):
        yield request.param


def test_the_modules_run_on_the_emulated_kernels(cuda_path):
    import torch

    import fusedrnn

    before = emulation.stats()["launches"]
    fusedrnn.GRU(3, 5)(torch.randn(4, 2, 3))
    fusedrnn.LSTMCell(3, 5)(torch.randn(2, 3))
    launched = emulation.stats()["launches"] - before
    if cuda_path == "standard":
        assert launched == 4 + 1  # a pointwise kernel per step
    else:
        assert launched == 1 + 1  # one launch per layer and direction
