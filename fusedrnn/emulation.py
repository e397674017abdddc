"""fusedrnn's CUDA kernels run on the CPU, through its CUDA emulation layer (csrc/emu/).

The kernels and the CUDA backend's host code (csrc/cuda/*.cuh) are compiled twice: by nvcc for the
GPU, and by the host compiler over an emulation of CUDA's execution model (blocks, threads as
fibers, shared memory, barriers, warp shuffles and votes, cooperative groups) for CPU tensors. The
second build is the extension module fusedrnn._emu (built when FUSEDRNN_EMU=1, as the test command
does), whose ops are torch.ops.fusedrnn_emu.layer_forward / layer_backward, with fusedrnn's schemas
and autograd. This module switches the functional API and the modules over to them:

    import fusedrnn, fusedrnn.emulation as emulation
    with emulation.enabled():                 # fusedrnn.LSTM & co. run the CUDA kernels, on the CPU
        out, (h, c) = fusedrnn.LSTM(8, 16)(torch.randn(5, 3, 8))

FUSEDRNN_EMULATE=1 enables it for the whole process (for example to run the module tests on it).
A run proves the kernels' logic (indexing, gates, packed rows, barriers, warp collectives) against
torch.nn; it cannot prove timing, memory ordering between blocks, or what a real GPU's occupancy is.
"""
import contextlib
import importlib

import torch

from . import _ops

__all__ = ["available", "load", "enable", "disable", "is_enabled", "enabled", "set_schedule_seed", "schedule_seed",
           "set_sm_count", "device_props", "stats"]

_module = None


def load():
    """The fusedrnn._emu extension module (loading it registers the fusedrnn_emu ops); raises
    ImportError with the way to build it when it is missing."""
    global _module
    if _module is None:
        try:
            module = importlib.import_module("fusedrnn._emu")
        except ImportError as e:
            raise ImportError("fusedrnn was built without its emulated CUDA backend (fusedrnn._emu); rebuild with "
                              "FUSEDRNN_EMU=1 pip install --no-build-isolation -e . (bash scripts/test.sh does)") from e
        _ops.register_fakes("fusedrnn_emu")
        _module = module
    return _module


def available():
    """Whether this build of fusedrnn has the emulated CUDA backend."""
    try:
        load()
    except ImportError:
        return False
    return True


def enable(seed=None, sm_count=None):
    """Route fusedrnn's functional API and modules through the emulated CUDA kernels. seed: the
    thread order at each barrier (0 = thread order); sm_count: the emulated device's SM count."""
    load()
    if seed is not None:
        set_schedule_seed(seed)
    if sm_count is not None:
        set_sm_count(sm_count)
    _ops.layer_op = torch.ops.fusedrnn_emu.layer_forward


def disable():
    """Back to fusedrnn's own kernels for the tensors' device."""
    _ops.layer_op = _ops.layer_forward


def is_enabled():
    return _ops.layer_op is not _ops.layer_forward


@contextlib.contextmanager
def enabled(seed=None, sm_count=None):
    """enable() for the duration of a with block; the previous op, seed and SM count come back after."""
    module = load()
    before = (_ops.layer_op, module.schedule_seed(), module.device_props()["sm_count"])
    try:
        enable(seed, sm_count)
        yield module
    finally:
        _ops.layer_op = before[0]
        module.set_schedule_seed(before[1])
        module.set_sm_count(before[2])


def set_schedule_seed(seed):
    """Thread order at every barrier: 0 in thread order, else shuffled from this seed."""
    load().set_schedule_seed(int(seed))


def schedule_seed():
    return load().schedule_seed()


def set_sm_count(n):
    """The emulated device's SM count (0: the default, 132): bounds cooperative launches and the
    occupancy the kernels' dispatch sees."""
    load().set_sm_count(int(n))


def device_props():
    """The emulated device's limits: sm_count, threads and blocks per SM, shared memory."""
    return load().device_props()


def stats():
    """Counters since loading: launches (cooperative ones too), blocks, threads, barriers, warp collectives."""
    return load().stats()
