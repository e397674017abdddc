// The CUDA backend of the layer ops (csrc/cuda/layer_kernel.cuh), compiled by g++ over the
// emulation layer: the same kernels and host code as the GPU build, run on CPU tensors, registered
// as fusedrnn_emu's ops (csrc/emu/module.cpp declares them).
#include "compat.h"
#include "../cuda/layer_kernel.cuh"

#include <torch/library.h>

TORCH_LIBRARY_IMPL(fusedrnn_emu, CPU, m) {
  m.impl("layer_forward", &fusedrnn::layer_forward_impl<fusedrnn::CudaBackend>);
  m.impl("layer_backward", &fusedrnn::layer_backward_impl<fusedrnn::CudaBackend>);
}
