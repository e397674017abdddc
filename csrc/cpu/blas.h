// Row-major GEMM on raw pointers for the per-step products of the CPU loop.
//
// It calls the Fortran BLAS (sgemm_ / dgemm_) that libtorch_cpu carries (MKL on x86 builds),
// found at run time next to libtorch_cpu, so the step loop makes no dispatcher round trip and
// builds no Tensor per product; where no such BLAS is found, or it fails a self-test on first
// use, or FUSEDRNN_DIRECT_BLAS=0 is set, it falls back to at::mm_out on borrowed tensors.
#pragma once

#include <ATen/core/Tensor.h>

namespace fusedrnn {
namespace cpu_blas {

// C[m, n] = A[m, k] @ W^T + beta * C when transpose_w (W is [n, k]), else A @ W + beta * C
// (W is [k, n]). All matrices contiguous, row-major. beta is 0 or 1.
template <typename scalar_t>
void gemm(int64_t m, int64_t n, int64_t k, const scalar_t* A, const scalar_t* W, bool transpose_w,
          scalar_t beta, scalar_t* C);

// Whether gemm<scalar_t> calls the BLAS directly (for tests and the benchmark's report).
bool has_direct_blas();

// While alive, the BLAS runs single-threaded on the calling thread: MKL's thread-local setting
// (a no-op with another BLAS). The CPU loop holds one around tiny layers, whose products lose
// more to threading than they gain. Do not hold one around a parallel region: set inside one,
// MKL's setting left OpenMP's thread count at 1 afterwards (tests/test_row_blocks.py checks).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int previous_;
};

}  // namespace cpu_blas
}  // namespace fusedrnn
