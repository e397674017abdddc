// The CUDA backend of the layer ops, built by nvcc for the GPU: the kernels and the backend are in
// layer_kernel.cuh, which the emulated build (csrc/emu/layer_kernel.cpp) compiles too.
#include "compat.h"
#include "layer_kernel.cuh"

#include <torch/library.h>

TORCH_LIBRARY_IMPL(fusedrnn, CUDA, m) {
  m.impl("layer_forward", &fusedrnn::layer_forward_impl<fusedrnn::CudaBackend>);
  m.impl("layer_backward", &fusedrnn::layer_backward_impl<fusedrnn::CudaBackend>);
}
