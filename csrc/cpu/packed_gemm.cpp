#include "packed_gemm.h"

#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace fusedrnn {
namespace cpu_packed {
namespace {

constexpr int64_t kPanel = 16;  // columns per panel: two AVX2 vectors
constexpr int kRows = 6;        // rows per tile: 6 x 2 accumulators + 2 B vectors + 1 A broadcast

}  // namespace

PackedWeight::PackedWeight(const float* W, int64_t n, int64_t k, bool transpose_w) : n_(n), k_(k) {
  const int64_t panels = (n + kPanel - 1) / kPanel;
  panels_ = at::empty({panels, k, kPanel}, at::TensorOptions().dtype(at::kFloat));  // 64-byte aligned
  float* P = panels_.data_ptr<float>();
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t c0 = p * kPanel, width = std::min(kPanel, n - c0);
    for (int64_t kk = 0; kk < k; ++kk) {
      float* dst = P + (p * k + kk) * kPanel;
      if (transpose_w) {
        for (int64_t j = 0; j < width; ++j) dst[j] = W[(c0 + j) * k + kk];
      } else {
        std::memcpy(dst, W + kk * n + c0, width * sizeof(float));
      }
      for (int64_t j = width; j < kPanel; ++j) dst[j] = 0.f;
    }
  }
}

#if defined(CPU_CAPABILITY_AVX2)

namespace {

// One tile: C[MR, width] (+)= A[MR, k] @ B[k, 16] (one panel), width <= 16 columns stored.
// The accumulators are named variables (an array of __m256 was spilled to the stack by GCC on
// every iteration, halving the speed).
template <int MR>
inline void tile(int64_t k, const float* A, int64_t lda, const float* B, float* C, int64_t ldc, int64_t width,
                 bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const float* a0 = A;
  const float* a1 = A + lda;
  const float* a2 = A + 2 * lda;
  const float* a3 = A + 3 * lda;
  const float* a4 = A + 4 * lda;
  const float* a5 = A + 5 * lda;
  for (int64_t kk = 0; kk < k; ++kk, B += kPanel) {
    const __m256 b0 = _mm256_load_ps(B), b1 = _mm256_load_ps(B + 8);
    __m256 a;
#define FUSEDRNN_ROW(r)                          \
  if constexpr (MR > r) {                        \
    a = _mm256_broadcast_ss(a##r + kk);          \
    c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);   \
    c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);   \
  }
    FUSEDRNN_ROW(0) FUSEDRNN_ROW(1) FUSEDRNN_ROW(2) FUSEDRNN_ROW(3) FUSEDRNN_ROW(4) FUSEDRNN_ROW(5)
#undef FUSEDRNN_ROW
  }
  auto store = [&](float* c, __m256 x0, __m256 x1) {
    if (width == kPanel) {
      if (accumulate) {
        x0 = _mm256_add_ps(x0, _mm256_loadu_ps(c));
        x1 = _mm256_add_ps(x1, _mm256_loadu_ps(c + 8));
      }
      _mm256_storeu_ps(c, x0);
      _mm256_storeu_ps(c + 8, x1);
    } else {
      float t[kPanel];
      _mm256_storeu_ps(t, x0);
      _mm256_storeu_ps(t + 8, x1);
      for (int64_t j = 0; j < width; ++j) c[j] = accumulate ? c[j] + t[j] : t[j];
    }
  };
  if constexpr (MR > 0) store(C, c00, c01);
  if constexpr (MR > 1) store(C + ldc, c10, c11);
  if constexpr (MR > 2) store(C + 2 * ldc, c20, c21);
  if constexpr (MR > 3) store(C + 3 * ldc, c30, c31);
  if constexpr (MR > 4) store(C + 4 * ldc, c40, c41);
  if constexpr (MR > 5) store(C + 5 * ldc, c50, c51);
}

}  // namespace

namespace {
// FUSEDRNN_PACKED_GEMM, read per layer call (for A/B runs): "0", "1", or "" when unset.
std::string switch_value() {
  const char* e = std::getenv("FUSEDRNN_PACKED_GEMM");
  return e ? e : "";
}
}  // namespace

bool available() { return switch_value() != "0"; }

bool worth_packing(int64_t rows) {
  const std::string v = switch_value();
  return v != "0" && (rows >= kMinRows || v == "1");
}

void gemm(int64_t m, const float* A, int64_t lda, const PackedWeight& W, float beta, float* C, int64_t ldc) {
  const int64_t n = W.n(), k = W.k(), panels = (n + kPanel - 1) / kPanel;
  const bool accumulate = beta != 0.f;
  // Rows in chunks whose A rows stay in L1 (about 24 KB) while every panel passes over them; the
  // panel (k x 16 floats) is read from L2 once per chunk. A step's rows mostly fit in one chunk.
  const int64_t chunk = m * k <= 8192 ? m : std::max<int64_t>(kRows, 6144 / std::max<int64_t>(k, 1) / kRows * kRows);
  for (int64_t m0 = 0; m0 < m; m0 += chunk) {
    const int64_t m1 = std::min(m, m0 + chunk);
    for (int64_t p = 0; p < panels; ++p) {
      const float* B = W.data() + p * k * kPanel;
      const int64_t c0 = p * kPanel, width = std::min(kPanel, n - c0);
      int64_t r = m0;
      for (; r + kRows <= m1; r += kRows) tile<6>(k, A + r * lda, lda, B, C + r * ldc + c0, ldc, width, accumulate);
      const float* a = A + r * lda;
      float* c = C + r * ldc + c0;
      switch (m1 - r) {
        case 5: tile<5>(k, a, lda, B, c, ldc, width, accumulate); break;
        case 4: tile<4>(k, a, lda, B, c, ldc, width, accumulate); break;
        case 3: tile<3>(k, a, lda, B, c, ldc, width, accumulate); break;
        case 2: tile<2>(k, a, lda, B, c, ldc, width, accumulate); break;
        case 1: tile<1>(k, a, lda, B, c, ldc, width, accumulate); break;
        default: break;
      }
    }
  }
}

#else  // no AVX2: the callers keep to the BLAS

bool available() { return false; }
bool worth_packing(int64_t) { return false; }

void gemm(int64_t, const float*, int64_t, const PackedWeight&, float, float*, int64_t) {
  TORCH_CHECK(false, "fusedrnn: the packed step product needs an AVX2 build");
}

#endif

namespace {

at::Tensor packed_step_gemm(const at::Tensor& a, const at::Tensor& w, bool transpose_w,
                            const c10::optional<at::Tensor>& c) {
  TORCH_CHECK(available(), "fusedrnn: the packed step product is not in this build (it needs AVX2) or is "
              "turned off (FUSEDRNN_PACKED_GEMM=0)");
  TORCH_CHECK(a.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat, "fusedrnn: _packed_step_gemm "
              "takes float32, got ", a.scalar_type(), " and ", w.scalar_type());
  TORCH_CHECK(a.dim() == 2 && w.dim() == 2, "fusedrnn: _packed_step_gemm takes 2-d a and w, got ", a.sizes(),
              " and ", w.sizes());
  const int64_t m = a.size(0), k = a.size(1), n = transpose_w ? w.size(0) : w.size(1);
  TORCH_CHECK((transpose_w ? w.size(1) : w.size(0)) == k, "fusedrnn: _packed_step_gemm: a ", a.sizes(),
              " does not match w ", w.sizes(), transpose_w ? " (transposed)" : "");
  at::Tensor out;
  if (c.has_value() && c->defined()) {
    TORCH_CHECK(c->scalar_type() == at::kFloat && c->dim() == 2 && c->size(0) == m && c->size(1) == n,
                "fusedrnn: _packed_step_gemm: c must be float32 of shape (", m, ", ", n, "), got ", c->sizes());
    out = c->contiguous().clone();
  } else {
    out = at::empty({m, n}, a.options());
  }
  const at::Tensor A = a.contiguous(), Wc = w.contiguous();
  const PackedWeight P(Wc.data_ptr<float>(), n, k, transpose_w);
  gemm(m, A.data_ptr<float>(), P, c.has_value() && c->defined() ? 1.f : 0.f, out.data_ptr<float>());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) { m.impl("_packed_step_gemm", &packed_step_gemm); }

}  // namespace cpu_packed
}  // namespace fusedrnn
