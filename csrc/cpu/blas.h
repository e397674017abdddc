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

// The same with explicit leading dimensions (row-major: the distance between rows of A, W, C).
template <typename scalar_t>
void gemm_ld(int64_t m, int64_t n, int64_t k, const scalar_t* A, int64_t lda, const scalar_t* W, int64_t ldw,
             bool transpose_w, scalar_t beta, scalar_t* C, int64_t ldc);

// Whether gemm<scalar_t> calls the BLAS directly (for tests and the benchmark's report).
bool has_direct_blas();

// While alive, the BLAS runs single-threaded on the calling thread (MKL's thread-local setting;
// a no-op with another BLAS, which runs nested calls single-threaded anyway). The split step
// loop uses it: its threads each run their own slice of a product.
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
