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
