// Measurements for scripts/gemm_efficiency.py: the machine's peak for the packed kernels' ISA, and
// the packed step product's rate at a given shape, both on the calling thread.
#include "packed_gemm.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <cstring>

#if defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace fusedrnn {
namespace cpu_packed {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

#if defined(CPU_CAPABILITY_AVX2)
// 12 independent FMA chains on registers, no memory traffic: an FMA's latency (4-5 clocks) times the
// FMA pipes (2 on Zen 3 and on these Xeons) needs at least 10 in flight; 12 keeps both pipes full.
// Named variables, not an array (an array's elements were kept on the stack, each FMA waiting on a
// store and a load: 20 GFLOP/s instead of 100); the empty asm keeps the loop from being folded.
#define FUSEDRNN_CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define FUSEDRNN_PEAK_LOOP(V, SET1, FMA, ADD, CONSTRAINT)                                              \
  FUSEDRNN_CHAINS(FUSEDRNN_INIT)                                                                    \
  const V mul = SET1(0.9999999f), add = SET1(1e-7f);                                                \
  const auto t0 = std::chrono::steady_clock::now();                                                 \
  for (int64_t i = 0; i < iters; ++i) {                                                             \
    FUSEDRNN_CHAINS(FUSEDRNN_STEP)                                                                  \
    __asm__ volatile("" : "+" CONSTRAINT(c0), "+" CONSTRAINT(c1), "+" CONSTRAINT(c2), "+" CONSTRAINT(c3), \
                     "+" CONSTRAINT(c4), "+" CONSTRAINT(c5), "+" CONSTRAINT(c6), "+" CONSTRAINT(c7),  \
                     "+" CONSTRAINT(c8), "+" CONSTRAINT(c9), "+" CONSTRAINT(c10), "+" CONSTRAINT(c11)); \
  }                                                                                                 \
  const double t = seconds_since(t0);                                                               \
  V sum = ADD(ADD(ADD(c0, c1), ADD(c2, c3)), ADD(ADD(c4, c5), ADD(c6, c7)));                        \
  sum = ADD(sum, ADD(ADD(c8, c9), ADD(c10, c11)));                                                  \
  alignas(64) float lanes[16];                                                                      \
  std::memcpy(lanes, &sum, sizeof(sum));                                                            \
  volatile float sink = lanes[0];                                                                   \
  (void)sink;                                                                                       \
  return 2.0 * (sizeof(V) / sizeof(float)) * 12 * static_cast<double>(iters) / t * 1e-9;

double avx2_peak(int64_t iters) {
#define FUSEDRNN_INIT(j) __m256 c##j = _mm256_set1_ps(1.0f + 0.01f * j);
#define FUSEDRNN_STEP(j) c##j = _mm256_fmadd_ps(c##j, mul, add);
  FUSEDRNN_PEAK_LOOP(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, "x")
#undef FUSEDRNN_INIT
#undef FUSEDRNN_STEP
}

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
double avx512_peak(int64_t iters) {
#define FUSEDRNN_INIT(j) __m512 c##j = _mm512_set1_ps(1.0f + 0.01f * j);
#define FUSEDRNN_STEP(j) c##j = _mm512_fmadd_ps(c##j, mul, add);
  FUSEDRNN_PEAK_LOOP(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, "v")
#undef FUSEDRNN_INIT
#undef FUSEDRNN_STEP
}
#pragma GCC pop_options
#undef FUSEDRNN_PEAK_LOOP
#undef FUSEDRNN_CHAINS
#endif
}  // namespace

double fma_peak_gflops(int64_t iters) {
  TORCH_CHECK(iters > 0, "fusedrnn: fma_peak_gflops: iters must be positive, got ", iters);
  TORCH_CHECK(available(), "fusedrnn: the packed kernels are not in this build (no AVX2) or turned off");
#if defined(CPU_CAPABILITY_AVX2)
  return std::string(isa()) == "avx512" ? avx512_peak(iters) : avx2_peak(iters);
#else
  return 0.0;
#endif
}

double gemm_gflops(int64_t m, int64_t n, int64_t k, int64_t repeats) {
  TORCH_CHECK(m > 0 && n > 0 && k > 0 && repeats > 0, "fusedrnn: gemm_gflops: m, n, k and repeats must be "
              "positive, got ", m, ", ", n, ", ", k, ", ", repeats);
  TORCH_CHECK(available(), "fusedrnn: the packed kernels are not in this build (no AVX2) or turned off");
  // As in a step: C = h_prev @ W_hh^T, W_hh [n, k] packed once, the same product every step.
  const at::Tensor A = at::randn({m, k}), W = at::randn({n, k}), C = at::empty({m, n});
  const PackedWeight P(W.data_ptr<float>(), n, k, true);
  for (int i = 0; i < 3; ++i) gemm(m, A.data_ptr<float>(), P, 0.f, C.data_ptr<float>());
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < repeats; ++i) gemm(m, A.data_ptr<float>(), P, 0.f, C.data_ptr<float>());
  return 2.0 * m * n * k * static_cast<double>(repeats) / seconds_since(t0) * 1e-9;
}

}  // namespace cpu_packed
}  // namespace fusedrnn
