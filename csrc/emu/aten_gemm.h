// C = A @ op(W) + beta C through ATen, on borrowed memory (row-major, rows contiguous): A [m, k],
// W [n, k] (transpose_w) or [k, n], C [m, n]. Half / bfloat16 operands into a float C are widened
// first. The emulated CUDA backend's step products (ATen on the CPU; the GPU build calls cuBLAS,
// csrc/cuda/compat.h).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <type_traits>

namespace fusedrnn {
namespace compat {

template <typename scalar_t, typename out_t>
void aten_gemm(bool transpose_w, int64_t m, int64_t n, int64_t k, const scalar_t* A, const scalar_t* W, out_t beta,
               out_t* C, const at::TensorOptions& opts) {
  const auto in = opts.dtype(c10::CppTypeToScalarType<scalar_t>::value);
  const auto out = opts.dtype(c10::CppTypeToScalarType<out_t>::value);
  const at::Tensor a = at::from_blob(const_cast<scalar_t*>(A), {m, k}, in);
  const at::Tensor w0 = at::from_blob(const_cast<scalar_t*>(W), transpose_w ? at::IntArrayRef{n, k}
                                                                             : at::IntArrayRef{k, n}, in);
  at::Tensor c = at::from_blob(C, {m, n}, out);
  const bool widen = !std::is_same<scalar_t, out_t>::value;
  const at::Tensor a_op = widen ? a.to(c.scalar_type()) : a;
  const at::Tensor w1 = widen ? w0.to(c.scalar_type()) : w0;
  const at::Tensor w = transpose_w ? w1.t() : w1;
  if (static_cast<float>(beta) == 0.f) {
    at::mm_out(c, a_op, w);
  } else {
    c.addmm_(a_op, w, static_cast<double>(static_cast<float>(beta)));
  }
}

}  // namespace compat
}  // namespace fusedrnn
