// Single-threaded float32 products against a weight packed once per layer call: the per-step
// products of the CPU loop when each thread runs its own block of rows (W_hh, and W_ih for the
// per-step input projection), and the whole-sequence input projection and input gradient (rows
// split between threads); see layer_kernel.cpp. Then weight_grad, the weight and bias gradients.
//
// At these shapes (a block of 8-128 rows times W_hh, W_hh resident in the core's L2) MKL's sgemm
// reached 50-80 GFLOP/s on one core of this project's 2-core AMD EPYC (Zen 3, about 100 GFLOP/s
// peak): it packs its operands on every call and is tuned for larger products. Here W is laid out
// once in panels of 16 columns, K x 16 contiguous, and an AVX2 kernel computes 6 x 16 tiles of C
// with 12 accumulators held in registers, reading A rows in place: measured 64-93 GFLOP/s on the
// same shapes (16 x 512 x 128: 22.5 us vs MKL's 32.1 us; 32 x 256 x 256: 47.1 vs 55.3 us;
// 128 x 300 x 100: 87.5 vs 103.1 us). A step's rows are cut into tiles of near-equal height (at
// most 6): a GRU layer of hidden 256 on one thread, 200 steps of 7 rows, 13.4 -> 11.4 ms against
// tiles of 6 + 1; 13 rows 20.8 -> 18.1 ms (6 + 6 + 1 before).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace fusedrnn {
namespace cpu_packed {

// Whether this build has the kernel (AVX2 + FMA builds; see setup.py's FUSEDRNN_CPU_CAPABILITY)
// and FUSEDRNN_PACKED_GEMM is not 0 (read on every call: once per layer call).
bool available();
// The kernels' instruction set for this call: "avx512" (where the CPU has it, unless
// FUSEDRNN_PACKED_ISA=avx2), "avx2", or "none" where unavailable.
const char* isa();

// Whether to pack a weight that `rows` rows will be multiplied with in this layer call. Packing
// costs about 1 ns per weight element (measured: 8.5 ms for two 2048 x 2048 weights), the kernel
// saves 15-30% of the product, 2 * rows flops per element: it pays from a few hundred rows. So by
// default only from kMinRows rows on (a cell's single step of 32 rows took 376 us packed against
// 267 us through the BLAS; a 1-step batch-1 RNN of hidden 2048, 11.3 ms against 2.8).
// FUSEDRNN_PACKED_GEMM=1 packs whatever the rows (tests), =0 never.
constexpr int64_t kMinRows = 256;
bool worth_packing(int64_t rows);
// Whether FUSEDRNN_PACKED_GEMM=1 asks for the kernels whatever the size (tests).
bool forced();
// Whether this CPU has the AVX-512 subsets the kernels use (F, VL, BW, DQ); AVX2 + FMA builds only.
bool cpu_has_avx512();

// Measurements on the calling thread (csrc/cpu/rates.cpp, scripts/gemm_efficiency.py), in GFLOP/s:
// FMAs on registers only with the kernels' ISA (the peak), and the step product C = A @ W^T of
// shape (m, n, k) against a weight packed once, `repeats` times.
double fma_peak_gflops(int64_t iters);
double gemm_gflops(int64_t m, int64_t n, int64_t k, int64_t repeats);

// W as the right-hand side of C[m, n] = A[m, k] @ op(W): op(W) = W^T when transpose_w (W is
// [n, k], as W_hh in the forward), else W (W is [k, n], as W_hh in the backward). W contiguous,
// row-major.
class PackedWeight {
 public:
  PackedWeight() = default;
  PackedWeight(const float* W, int64_t n, int64_t k, bool transpose_w);
  bool defined() const { return panels_.defined(); }
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  const float* data() const { return panels_.data_ptr<float>(); }

 private:
  at::Tensor panels_;  // [ceil(n / 16), k, 16], zero-padded past column n
  int64_t n_ = 0, k_ = 0;
};

// C[m, n] = A[m, k] @ op(W) + beta * C, beta 0 or 1; A and C row-major with rows lda and ldc
// apart. Runs on the calling thread. Only where available().
void gemm(int64_t m, const float* A, int64_t lda, const PackedWeight& W, float beta, float* C, int64_t ldc);
inline void gemm(int64_t m, const float* A, const PackedWeight& W, float beta, float* C) {
  gemm(m, A, W.k(), W, beta, C, W.n());
}

// One row against W's rows in place, no packing: c[j] = a[0, k] . W[j, 0:k] for j < n, W's rows ldw
// apart (a batch of one row: the unit split's step product at batch 1, where packing W_hh once a
// call, memory bound, cost about as much as several steps). Runs on the calling thread. Only
// where available().
void gemv_rows(int64_t n, int64_t k, const float* a, const float* W, int64_t ldw, float* c);

// Weight gradients, C[M, Kc] = sum over rows of G[row, :M]^T [A1[row, :K1] | A2[row, :K2] | 1],
// Kc = K1 + K2 + (ones ? 1 : 0): dW_ih and dW_hh side by side, and with `ones` the bias gradient
// (the sum of G's rows) in the last column. The rows come in segments: segment i covers rows
// [row, row + rows) of G (rows ldg apart) and A1 (lda1 apart) and the rows of A2 starting at a2
// (K2 apart; a2 unused when K2 == 0). Both operands are packed in chunks of rows (G in 6-column
// tiles, [A1 | A2 | 1] in 16-column panels) and multiplied by the same register tile as gemm.
// Rows are split between threads (a caller's parallel region: one thread); each sums its rows
// in order, the partial sums are added in thread order: the result depends on the thread count
// only. Only where available(). One core, 16384 rows: 256 x 356 (imdb_rnn's dW_ih | dW_hh | db)
// at 77-81 GFLOP/s; on 2 threads, against MKL's products plus torch's row sum for the bias at
// the model shapes: imdb_rnn 20.4 vs 22.9 ms, fastai_rnn 6.1 vs 7.9, fastai_gru 8.8 vs 11.5 (each
// side), char_lstm 29.5 vs 34.1 (best of 9).
struct GradSegment {
  int64_t row;
  const float* a2;
  int64_t rows;
};
void weight_grad(int64_t M, const float* G, int64_t ldg, int64_t K1, const float* A1, int64_t lda1, int64_t K2,
                 bool ones, const GradSegment* segments, int64_t count, float* C);

}  // namespace cpu_packed
}  // namespace fusedrnn
