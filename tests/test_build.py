"""What the build registered: CPU kernels always, CUDA kernels when the build was asked for them."""
import os

import pytest
import torch

import fusedrnn  # noqa: F401

OPS = ("fusedrnn::layer_forward", "fusedrnn::layer_backward")


def test_cpu_kernels_are_registered():
    for op in OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU")


@pytest.mark.skipif(os.environ.get("FUSEDRNN_EXPECT_CUDA") != "1",
                    reason="CUDA kernels are required only where FUSEDRNN_EXPECT_CUDA=1 (CI's CUDA build, GPU runs)")
def test_cuda_kernels_are_registered():
    assert torch.version.cuda is not None, "torch is not a CUDA build"
    for op in OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA"), f"{op} has no CUDA kernel"


@pytest.mark.skipif(os.environ.get("FUSEDRNN_EXPECT_EMU") != "1",
                    reason="the emulated CUDA backend is required only where FUSEDRNN_EXPECT_EMU=1 (the test command)")
def test_emulated_cuda_kernels_are_registered():
    import fusedrnn.emulation as emulation

    emulation.load()
    for op in OPS:
        emu_op = op.replace("fusedrnn::", "fusedrnn_emu::")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(emu_op, "CPU"), f"{emu_op} has no kernel"
        assert torch._C._dispatch_has_kernel_for_dispatch_key(emu_op, "Autograd") or "backward" in op


@pytest.mark.skipif(os.environ.get("FUSEDRNN_EXPECT_WHEEL") != "1",
                    reason="only where the tests run against an installed wheel (scripts/test_wheel.sh)")
def test_the_installed_wheel_is_what_runs():
    # tests/conftest.py keeps the checkout's fusedrnn/ off sys.path, so it cannot shadow the wheel.
    assert os.sep + "site-packages" + os.sep in fusedrnn.__file__, fusedrnn.__file__


def test_step_gemm_fallback_gives_the_same_results():
    """The CPU loop's per-step GEMM calls libtorch_cpu's BLAS directly when it finds one; forced
    off (FUSEDRNN_DIRECT_BLAS=0, read once per process), the at::mm fallback must agree."""
    import subprocess
    import sys

    code = (
        "import torch, fusedrnn, fusedrnn._C as C\n"
        "torch.manual_seed(0)\n"
        "m = torch.nn.GRU(3, 5, 2, bidirectional=True).double()\n"
        "x = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)\n"
        "out, h = fusedrnn.functional.gru(x, None, m._flat_weights, num_layers=2, bidirectional=True)\n"
        "out.pow(2).sum().backward()\n"
        "print(C.direct_blas(), repr(out.sum().item()), repr(x.grad.sum().item()))\n"
    )
    results = {}
    for flag in ("1", "0"):
        env = dict(os.environ, FUSEDRNN_DIRECT_BLAS=flag)
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        results[flag] = run.stdout.split()
    assert results["0"][0] == "False"
    for a, b in zip(results["1"][1:], results["0"][1:]):
        assert abs(float(a) - float(b)) <= 1e-10 * max(1.0, abs(float(b)))
