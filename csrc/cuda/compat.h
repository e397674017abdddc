// The CUDA side of the one header that differs between fusedrnn's two builds of its CUDA kernels:
// nvcc for the GPU (this file) and g++ over the emulation layer (csrc/emu/compat.h, the same API).
// Kernel sources (csrc/cuda/*.cuh) include neither; the translation unit includes one, then them.
//   compat::Stream, current_stream()       the stream launches go to
//   compat::DeviceGuard(device)            makes the tensor's device current
//   compat::is_device_tensor(t)            whether t lives where the kernels run
//   compat::launch<Kernel>(grid, block, smem, stream, args...)              a launch, checked
//   compat::launch_cooperative<Kernel>(...)                                  every block resident at once
//   compat::dynamic_smem<T>()              the block's dynamic shared memory (device code)
//   compat::multiprocessor_count(), compat::max_active_blocks_per_sm<Kernel>(threads, smem)
//   namespace cg                           cooperative groups
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

namespace cg = cooperative_groups;

namespace fusedrnn {
namespace compat {

constexpr const char* kBackendName = "CUDA";
using Stream = cudaStream_t;
using DeviceGuard = c10::cuda::CUDAGuard;
inline Stream current_stream() { return c10::cuda::getCurrentCUDAStream(); }
inline bool is_device_tensor(const at::Tensor& t) { return t.is_cuda(); }

namespace detail {
template <auto Kernel, typename... P, typename... A>
void launch(void (*)(P...), bool cooperative, dim3 grid, dim3 block, std::size_t smem, Stream stream, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "wrong number of kernel arguments");
  std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  void* pointers[sizeof...(P) > 0 ? sizeof...(P) : 1];
  std::apply([&pointers](auto&... p) {
    int i = 0;
    ((pointers[i++] = static_cast<void*>(&p)), ...);
  }, params);
  if (smem > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  C10_CUDA_CHECK(cooperative ? cudaLaunchCooperativeKernel(Kernel, grid, block, pointers, smem, stream)
                             : cudaLaunchKernel(Kernel, grid, block, pointers, smem, stream));
}
}  // namespace detail

template <auto Kernel, typename... A>
void launch(dim3 grid, dim3 block, std::size_t smem, Stream stream, A&&... args) {
  detail::launch<Kernel>(Kernel, false, grid, block, smem, stream, std::forward<A>(args)...);
}
template <auto Kernel, typename... A>
void launch_cooperative(dim3 grid, dim3 block, std::size_t smem, Stream stream, A&&... args) {
  detail::launch<Kernel>(Kernel, true, grid, block, smem, stream, std::forward<A>(args)...);
}

template <typename T>
__device__ __forceinline__ T* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char fusedrnn_dynamic_smem[];
  return reinterpret_cast<T*>(fusedrnn_dynamic_smem);
}

inline int multiprocessor_count() {
  int device = 0, count = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}
template <auto Kernel>
int max_active_blocks_per_sm(int threads, std::size_t smem) {
  int blocks = 0;
  if (smem > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, Kernel, threads, smem));
  return blocks;
}

}  // namespace compat
}  // namespace fusedrnn
