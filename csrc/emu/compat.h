// The emulation side of the one header that differs between fusedrnn's two builds of its CUDA
// kernels (the same API as csrc/cuda/compat.h, which documents it): kernels run on the CPU through
// the emulation layer (emu.h), on CPU tensors, launched synchronously.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstddef>
#include <utility>

#include "aten_gemm.h"
#include "emu.h"

namespace cg = cooperative_groups;

namespace fusedrnn {
namespace compat {

constexpr const char* kBackendName = "emulated CUDA";
struct Stream {};
inline Stream current_stream() { return {}; }
struct DeviceGuard {
  explicit DeviceGuard(c10::Device) {}
};
inline bool is_device_tensor(const at::Tensor& t) { return t.is_cpu(); }

template <auto Kernel, typename... A>
void launch(dim3 grid, dim3 block, std::size_t smem, Stream, A&&... args) {
  emu::launch<Kernel>(grid, block, smem, false, std::forward<A>(args)...);
}
template <auto Kernel, typename... A>
void launch_cooperative(dim3 grid, dim3 block, std::size_t smem, Stream, A&&... args) {
  emu::launch<Kernel>(grid, block, smem, true, std::forward<A>(args)...);
}

template <typename T>
inline T* dynamic_smem() {
  return reinterpret_cast<T*>(emu::dynamic_smem());
}

inline int multiprocessor_count() { return emu::device_props().sm_count; }
inline std::size_t max_smem_per_block_optin() { return emu::device_props().smem_per_block_optin; }
inline at::Tensor to_device(const at::Tensor& host, c10::Device) { return host; }  // the "device" is the CPU

// The standard path's step products: ATen on the CPU (no cuBLAS to emulate).
template <typename scalar_t, typename out_t>
void gemm(bool transpose_w, int64_t m, int64_t n, int64_t k, const scalar_t* A, const scalar_t* W, out_t beta,
          out_t* C, const at::TensorOptions& opts) {
  aten_gemm(transpose_w, m, n, k, A, W, beta, C, opts);
}
template <auto Kernel>
int max_active_blocks_per_sm(int threads, std::size_t smem) {
  return emu::max_active_blocks_per_sm(threads, smem);
}

}  // namespace compat
}  // namespace fusedrnn
