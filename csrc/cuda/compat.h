// The CUDA side of the one header that differs between fusedrnn's two builds of its CUDA kernels:
// nvcc for the GPU (this file) and g++ over the emulation layer (csrc/emu/compat.h, the same API).
// Kernel sources (csrc/cuda/*.cuh) include neither; the translation unit includes one, then them.
//   compat::Stream, current_stream()       the stream launches go to
//   compat::DeviceGuard(device)            makes the tensor's device current
//   compat::is_device_tensor(t)            whether t lives where the kernels run
//   compat::launch<Kernel>(grid, block, smem, stream, args...)              a launch, checked
//   compat::launch_cooperative<Kernel>(...)                                  every block resident at once
//   compat::dynamic_smem<T>()              the block's dynamic shared memory (device code)
//   compat::multiprocessor_count(), compat::max_active_blocks_per_sm<Kernel>(threads, smem),
//   compat::max_smem_per_block_optin()    the device's limits, for the persistent path's plan
//   compat::to_device(host, device)        a small host tensor where kernels can read it, without a
//                                          host synchronisation
//   compat::gemm(transpose_w, m, n, k, A, W, beta, C, opts)   the standard path's step products,
//                                          C = A @ op(W) + beta C, row-major: cublasGemmEx on the
//                                          current stream with torch's handle, no tensors, no
//                                          dispatcher
//   namespace cg                           cooperative groups
//   nvcuda::wmma, __half, __nv_bfloat16    warp matrix multiply-accumulate (the tensor cores)
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/Exceptions.h>
#include <cublas_v2.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstddef>
#include <cstdint>
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
  extern __shared__ __align__(128) unsigned char fusedrnn_dynamic_smem[];
  return reinterpret_cast<T*>(fusedrnn_dynamic_smem);
}

inline int multiprocessor_count() {
  int device = 0, count = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}
inline std::size_t max_smem_per_block_optin() {
  int device = 0, bytes = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return static_cast<std::size_t>(bytes);
}
// Through pinned memory, asynchronously on the current stream (the caching host allocator keeps
// the pinned block until the copy is done).
inline at::Tensor to_device(const at::Tensor& host, c10::Device device) {
  return host.pin_memory().to(device, /*non_blocking=*/true);
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

// C = A @ op(W) + beta C, row-major with contiguous rows: A [m, k], W [n, k] (transpose_w) or [k, n],
// C [m, n], through cublasGemmEx. cuBLAS is column-major, so it computes C^T = op(W)^T A^T: the
// weight is its first operand. torch's handle (at::cuda::getCurrentCUDABlasHandle) carries the
// current stream, the workspace and the math mode (TF32 where torch.backends.cuda.matmul.allow_tf32
// allows it, as torch's own matmuls). Half / bfloat16 operands into a float C: cuBLAS's mixed gemm,
// float accumulation.
namespace detail {
template <typename T>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same<T, double>::value) return CUDA_R_64F;
  if constexpr (std::is_same<T, float>::value) return CUDA_R_32F;
  if constexpr (std::is_same<T, c10::Half>::value) return CUDA_R_16F;
  return CUDA_R_16BF;
}
}  // namespace detail

template <typename scalar_t, typename out_t>
void gemm(bool transpose_w, int64_t m, int64_t n, int64_t k, const scalar_t* A, const scalar_t* W, out_t beta,
          out_t* C, const at::TensorOptions&) {
  static_assert(std::is_same<scalar_t, out_t>::value || std::is_same<out_t, float>::value, "C is scalar_t or float");
  constexpr bool dbl = std::is_same<scalar_t, double>::value;
  using coef_t = std::conditional_t<dbl, double, float>;
  const coef_t one = 1, b = static_cast<coef_t>(static_cast<float>(beta));
  TORCH_CHECK(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX, "fusedrnn: a step product too large for cuBLAS");
  const int M = static_cast<int>(n), N = static_cast<int>(m), K = static_cast<int>(k);
  TORCH_CUDABLAS_CHECK(cublasGemmEx(at::cuda::getCurrentCUDABlasHandle(), transpose_w ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    CUBLAS_OP_N, M, N, K, &one, W, detail::cuda_type<scalar_t>(),
                                    transpose_w ? K : M, A, detail::cuda_type<scalar_t>(), K, &b, C,
                                    detail::cuda_type<out_t>(), M, dbl ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
}

}  // namespace compat
}  // namespace fusedrnn
