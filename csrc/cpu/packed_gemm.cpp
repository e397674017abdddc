#include "packed_gemm.h"

#include "buffer_pool.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace fusedrnn {
namespace cpu_packed {
namespace {

constexpr int64_t kPanel = 16;  // columns per panel: two AVX2 vectors
constexpr int kRows = 6;        // rows per tile: 6 x 2 accumulators + 2 B vectors + 1 A broadcast
constexpr int64_t kMaxStepRows = 64;  // products of up to this many rows read each panel once...
constexpr int64_t kMaxStepA = int64_t(1) << 17;  // ... when A has at most this many floats (512 KB)
constexpr int64_t kBlockK = 256;      // gemm of more rows: the weight's k rows per block
constexpr int64_t kGradRows = 256;    // weight_grad: rows packed per chunk
constexpr int64_t kTileBlock = 16;    // weight_grad: G tiles per block

}  // namespace

#if defined(CPU_CAPABILITY_AVX2)
namespace {
// Transposes the 8 x 8 block whose rows are r[0..7] (8 floats each) into c[0..7].
inline void transpose8(const __m256 r[8], __m256 c[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  c[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  c[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  c[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  c[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  c[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  c[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  c[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  c[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// A full panel of W^T (W's rows c0 .. c0 + 15, k apart) over kk [0, k8), k8 a multiple of 8:
// two 8 x 8 transposes per 8 of k instead of 16 scalar reads 4k bytes apart per k.
inline void pack_panel_transposed(const float* W, int64_t k, int64_t k8, float* dst) {
  __m256 r[8], c[8];
  for (int64_t kk = 0; kk < k8; kk += 8) {
    for (int half = 0; half < 2; ++half) {
      for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(W + (half * 8 + j) * k + kk);
      transpose8(r, c);
      for (int q = 0; q < 8; ++q) _mm256_store_ps(dst + (kk + q) * kPanel + half * 8, c[q]);
    }
  }
}
}  // namespace
#endif

PackedWeight::PackedWeight(const float* W, int64_t n, int64_t k, bool transpose_w) : n_(n), k_(k) {
  const int64_t panels = (n + kPanel - 1) / kPanel;
  panels_ = cpu_pool::empty({panels, k, kPanel}, at::TensorOptions().dtype(at::kFloat));  // 64-byte aligned
  float* P = panels_.data_ptr<float>();
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t c0 = p * kPanel, width = std::min(kPanel, n - c0);
    int64_t kk = 0;
#if defined(CPU_CAPABILITY_AVX2)
    // Full panels of W^T (every weight in the forward): 8 x 8 transposes. W_hh of GRU hidden 1024
    // (3072 x 1024), packed once per layer call: 11% of gru_h1024_b1's inference samples before.
    if (transpose_w && width == kPanel) {
      kk = k / 8 * 8;
      pack_panel_transposed(W + c0 * k, k, kk, P + p * k * kPanel);
    }
#endif
    for (; kk < k; ++kk) {
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

// Stores (or adds, when accumulate) the first `width` of 16 columns x0 | x1 at c.
inline void store_row(float* c, __m256 x0, __m256 x1, int64_t width, bool accumulate) {
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
}

// One tile: C[MR, width] (+)= A[MR, k] @ B[k, 16] (one panel), width <= 16 columns stored.
// The accumulators are named variables (an array of __m256 was spilled to the stack by GCC on
// every iteration, halving the speed). Narrow (width <= 8, a last panel): the panel's first
// vector only.
template <int MR, bool Narrow>
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
    const __m256 b0 = _mm256_load_ps(B), b1 = Narrow ? b0 : _mm256_load_ps(B + 8);
    __m256 a;
#define FUSEDRNN_ROW(r)                                            \
  if constexpr (MR > r) {                                          \
    a = _mm256_broadcast_ss(a##r + kk);                            \
    c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);                     \
    if constexpr (!Narrow) c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1); \
  }
    FUSEDRNN_ROW(0) FUSEDRNN_ROW(1) FUSEDRNN_ROW(2) FUSEDRNN_ROW(3) FUSEDRNN_ROW(4) FUSEDRNN_ROW(5)
#undef FUSEDRNN_ROW
  }
  auto store = [&](float* c, __m256 x0, __m256 x1) { store_row(c, x0, x1, width, accumulate); };
  if constexpr (MR > 0) store(C, c00, c01);
  if constexpr (MR > 1) store(C + ldc, c10, c11);
  if constexpr (MR > 2) store(C + 2 * ldc, c20, c21);
  if constexpr (MR > 3) store(C + 3 * ldc, c30, c31);
  if constexpr (MR > 4) store(C + 4 * ldc, c40, c41);
  if constexpr (MR > 5) store(C + 5 * ldc, c50, c51);
}

// One row against four panels: C[0, 64] = A[0, k] @ B[k, 4 x 16]. A 1 x 16 tile has two
// accumulator chains, and the FMA latency holds it to a quarter of the FMA units' rate; four panels
// at a time give eight. Panels are k * 16 floats apart; all four full width.
inline void row_tile4(int64_t k, const float* A, const float* B, int64_t panel_stride, float* C, bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  const float* B1 = B + panel_stride;
  const float* B2 = B + 2 * panel_stride;
  const float* B3 = B + 3 * panel_stride;
  for (int64_t kk = 0; kk < k; ++kk) {
    const __m256 a = _mm256_broadcast_ss(A + kk);
    const int64_t o = kk * kPanel;
    c00 = _mm256_fmadd_ps(a, _mm256_load_ps(B + o), c00);
    c01 = _mm256_fmadd_ps(a, _mm256_load_ps(B + o + 8), c01);
    c10 = _mm256_fmadd_ps(a, _mm256_load_ps(B1 + o), c10);
    c11 = _mm256_fmadd_ps(a, _mm256_load_ps(B1 + o + 8), c11);
    c20 = _mm256_fmadd_ps(a, _mm256_load_ps(B2 + o), c20);
    c21 = _mm256_fmadd_ps(a, _mm256_load_ps(B2 + o + 8), c21);
    c30 = _mm256_fmadd_ps(a, _mm256_load_ps(B3 + o), c30);
    c31 = _mm256_fmadd_ps(a, _mm256_load_ps(B3 + o + 8), c31);
  }
  store_row(C, c00, c01, kPanel, accumulate);
  store_row(C + kPanel, c10, c11, kPanel, accumulate);
  store_row(C + 2 * kPanel, c20, c21, kPanel, accumulate);
  store_row(C + 3 * kPanel, c30, c31, kPanel, accumulate);
}

template <bool Narrow>
inline void tile_of_height(int64_t height, int64_t k, const float* A, int64_t lda, const float* B, float* C,
                           int64_t ldc, int64_t width, bool accumulate) {
  switch (height) {
    case 6: tile<6, Narrow>(k, A, lda, B, C, ldc, width, accumulate); break;
    case 5: tile<5, Narrow>(k, A, lda, B, C, ldc, width, accumulate); break;
    case 4: tile<4, Narrow>(k, A, lda, B, C, ldc, width, accumulate); break;
    case 3: tile<3, Narrow>(k, A, lda, B, C, ldc, width, accumulate); break;
    case 2: tile<2, Narrow>(k, A, lda, B, C, ldc, width, accumulate); break;
    case 1: tile<1, Narrow>(k, A, lda, B, C, ldc, width, accumulate); break;
    default: break;
  }
}

}  // namespace

// ---- AVX-512 kernels, chosen at run time where the CPU has AVX-512 (see use_avx512) ------------
// The same packed layout: a panel row of 16 floats is one zmm vector. gemm's tiles are up to 8 rows
// by two panels (16 accumulators: the FMA units' two ports times their 4-cycle latency need 8
// independent chains, and a load port per 8 FMAs is left for A's broadcasts); weight_grad's are a
// G tile's 6 rows by two panels (12 accumulators).
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
namespace avx512 {

constexpr int kRows = 8;
constexpr int64_t kPrefetchRows = 16;  // panel rows (64 bytes each) read ahead

inline __mmask16 lanes(int64_t width) {
  return width >= kPanel ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << width) - 1u);
}

// Stores (or adds, when accumulate) the first `width` of 16 columns of x at c.
inline void store(float* c, __m512 x, int64_t width, bool accumulate) {
  const __mmask16 m = lanes(width);
  if (accumulate) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, c));
  _mm512_mask_storeu_ps(c, m, x);
}

// C[MR, 16 NP] (+)= A[MR, k] @ [B | B + pstride] (NP panels), widths w0 and w1 of the panels stored.
template <int MR, int NP>
inline void tile(int64_t k, const float* A, int64_t lda, const float* B, int64_t pstride, float* C, int64_t ldc,
                 int64_t w0, int64_t w1, bool accumulate) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  const float* a0 = A;
  const float* a1 = A + lda;
  const float* a2 = A + 2 * lda;
  const float* a3 = A + 3 * lda;
  const float* a4 = A + 4 * lda;
  const float* a5 = A + 5 * lda;
  const float* a6 = A + 6 * lda;
  const float* a7 = A + 7 * lda;
  const float* B1 = B + pstride;
  for (int64_t kk = 0; kk < k; ++kk) {
    _mm_prefetch(reinterpret_cast<const char*>(B + (kk + kPrefetchRows) * kPanel), _MM_HINT_T0);
    if constexpr (NP > 1) _mm_prefetch(reinterpret_cast<const char*>(B1 + (kk + kPrefetchRows) * kPanel), _MM_HINT_T0);
    const __m512 b0 = _mm512_load_ps(B + kk * kPanel);
    const __m512 b1 = NP > 1 ? _mm512_load_ps(B1 + kk * kPanel) : b0;
    __m512 a;
#define FUSEDRNN_ROW(r)                                              \
  if constexpr (MR > r) {                                            \
    a = _mm512_set1_ps(a##r[kk]);                                    \
    c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);                       \
    if constexpr (NP > 1) c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1); \
  }
    FUSEDRNN_ROW(0) FUSEDRNN_ROW(1) FUSEDRNN_ROW(2) FUSEDRNN_ROW(3)
    FUSEDRNN_ROW(4) FUSEDRNN_ROW(5) FUSEDRNN_ROW(6) FUSEDRNN_ROW(7)
#undef FUSEDRNN_ROW
  }
#define FUSEDRNN_STORE(r)                                                           \
  if constexpr (MR > r) {                                                           \
    store(C + r * ldc, c##r##0, w0, accumulate);                                    \
    if constexpr (NP > 1) store(C + r * ldc + kPanel, c##r##1, w1, accumulate);     \
  }
  FUSEDRNN_STORE(0) FUSEDRNN_STORE(1) FUSEDRNN_STORE(2) FUSEDRNN_STORE(3)
  FUSEDRNN_STORE(4) FUSEDRNN_STORE(5) FUSEDRNN_STORE(6) FUSEDRNN_STORE(7)
#undef FUSEDRNN_STORE
}

template <int NP>
inline void tile_of_height(int64_t height, int64_t k, const float* A, int64_t lda, const float* B, int64_t pstride,
                           float* C, int64_t ldc, int64_t w0, int64_t w1, bool accumulate) {
  switch (height) {
    case 8: tile<8, NP>(k, A, lda, B, pstride, C, ldc, w0, w1, accumulate); break;
    case 7: tile<7, NP>(k, A, lda, B, pstride, C, ldc, w0, w1, accumulate); break;
    case 6: tile<6, NP>(k, A, lda, B, pstride, C, ldc, w0, w1, accumulate); break;
    case 5: tile<5, NP>(k, A, lda, B, pstride, C, ldc, w0, w1, accumulate); break;
    case 4: tile<4, NP>(k, A, lda, B, pstride, C, ldc, w0, w1, accumulate); break;
    case 3: tile<3, NP>(k, A, lda, B, pstride, C, ldc, w0, w1, accumulate); break;
    case 2: tile<2, NP>(k, A, lda, B, pstride, C, ldc, w0, w1, accumulate); break;
    case 1: tile<1, NP>(k, A, lda, B, pstride, C, ldc, w0, w1, accumulate); break;
    default: break;
  }
}

// One row against eight full panels (eight accumulator chains): C[0, 128] = A[0, k] @ B[k, 8 x 16].
inline void row_tile8(int64_t k, const float* A, const float* B, int64_t pstride, float* C, bool accumulate) {
  __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
  for (int64_t kk = 0; kk < k; ++kk) {
    const __m512 a = _mm512_set1_ps(A[kk]);
    const float* b = B + kk * kPanel;
    c0 = _mm512_fmadd_ps(a, _mm512_load_ps(b), c0);
    c1 = _mm512_fmadd_ps(a, _mm512_load_ps(b + pstride), c1);
    c2 = _mm512_fmadd_ps(a, _mm512_load_ps(b + 2 * pstride), c2);
    c3 = _mm512_fmadd_ps(a, _mm512_load_ps(b + 3 * pstride), c3);
    c4 = _mm512_fmadd_ps(a, _mm512_load_ps(b + 4 * pstride), c4);
    c5 = _mm512_fmadd_ps(a, _mm512_load_ps(b + 5 * pstride), c5);
    c6 = _mm512_fmadd_ps(a, _mm512_load_ps(b + 6 * pstride), c6);
    c7 = _mm512_fmadd_ps(a, _mm512_load_ps(b + 7 * pstride), c7);
  }
  store(C, c0, kPanel, accumulate);
  store(C + kPanel, c1, kPanel, accumulate);
  store(C + 2 * kPanel, c2, kPanel, accumulate);
  store(C + 3 * kPanel, c3, kPanel, accumulate);
  store(C + 4 * kPanel, c4, kPanel, accumulate);
  store(C + 5 * kPanel, c5, kPanel, accumulate);
  store(C + 6 * kPanel, c6, kPanel, accumulate);
  store(C + 7 * kPanel, c7, kPanel, accumulate);
}

// gemm's AVX-512 body for one block (see gemm): rows [m0, m1) against panels [p0, p1), over
// k-range [k0, k0 + kb) of the weight's k rows.
void gemm_block(const float* A, int64_t lda, const float* W, int64_t n, int64_t k, float* C, int64_t ldc,
                bool accumulate, int64_t m0, int64_t m1, int64_t p0, int64_t p1, int64_t k0, int64_t kb) {
  const int64_t pstride = k * kPanel;
  if (m1 - m0 == 1) {
    for (; p0 + 8 <= p1 && (p0 + 8) * kPanel <= n; p0 += 8) {
      row_tile8(kb, A + m0 * lda + k0, W + p0 * pstride + k0 * kPanel, pstride, C + m0 * ldc + p0 * kPanel,
                accumulate);
    }
  }
  const int64_t rows = m1 - m0, tiles = (rows + kRows - 1) / kRows;
  const int64_t base = tiles ? rows / tiles : 0, taller = tiles ? rows % tiles : 0;
  for (int64_t p = p0; p < p1; p += 2) {
    const float* B = W + p * pstride + k0 * kPanel;
    const int64_t w0 = std::min(kPanel, n - p * kPanel), w1 = p + 1 < p1 ? std::min(kPanel, n - (p + 1) * kPanel) : 0;
    int64_t r = m0;
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t height = base + (t < taller ? 1 : 0);
      const float* a = A + r * lda + k0;
      float* c = C + r * ldc + p * kPanel;
      if (w1 > 0) {
        tile_of_height<2>(height, kb, a, lda, B, pstride, c, ldc, w0, w1, accumulate);
      } else {
        tile_of_height<1>(height, kb, a, lda, B, pstride, c, ldc, w0, 0, accumulate);
      }
      r += height;
    }
  }
}

// weight_grad's tile: a G tile's mr (<= 6) rows of C by NP panels over L packed rows; g [L][6],
// a [L][16] with the second panel pstride floats on.
template <int NP>
inline void grad_tile(int64_t L, const float* g, const float* a, int64_t pstride, float* C, int64_t ldc, int64_t mr,
                      int64_t w0, int64_t w1, bool accumulate) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const float* a1 = a + pstride;
  for (int64_t l = 0; l < L; ++l, g += 6) {
    const __m512 b0 = _mm512_load_ps(a + l * kPanel);
    const __m512 b1 = NP > 1 ? _mm512_load_ps(a1 + l * kPanel) : b0;
    __m512 x;
#define FUSEDRNN_ROW(r)                                             \
  x = _mm512_set1_ps(g[r]);                                         \
  c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0);                        \
  if constexpr (NP > 1) c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1);
    FUSEDRNN_ROW(0) FUSEDRNN_ROW(1) FUSEDRNN_ROW(2) FUSEDRNN_ROW(3) FUSEDRNN_ROW(4) FUSEDRNN_ROW(5)
#undef FUSEDRNN_ROW
  }
#define FUSEDRNN_STORE(r)                                                             \
  if (mr > r) {                                                                       \
    store(C + r * ldc, c##r##0, w0, accumulate);                                      \
    if constexpr (NP > 1) store(C + r * ldc + kPanel, c##r##1, w1, accumulate);       \
  }
  FUSEDRNN_STORE(0) FUSEDRNN_STORE(1) FUSEDRNN_STORE(2) FUSEDRNN_STORE(3) FUSEDRNN_STORE(4) FUSEDRNN_STORE(5)
#undef FUSEDRNN_STORE
}

// gemv_rows on AVX-512: eight rows of W at a time, 16 of k a vector, the rows' sums reduced at
// the end; k's tail by a masked load.
void gemv_rows(int64_t n, int64_t k, const float* a, const float* W, int64_t ldw, float* c) {
  const int64_t k16 = k / 16 * 16;
  const __mmask16 tail = lanes(k - k16);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const float* w = W + j * ldw;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    auto step = [&](int64_t kk, __m512 x, auto load) {
      s0 = _mm512_fmadd_ps(x, load(w + kk), s0);
      s1 = _mm512_fmadd_ps(x, load(w + ldw + kk), s1);
      s2 = _mm512_fmadd_ps(x, load(w + 2 * ldw + kk), s2);
      s3 = _mm512_fmadd_ps(x, load(w + 3 * ldw + kk), s3);
      s4 = _mm512_fmadd_ps(x, load(w + 4 * ldw + kk), s4);
      s5 = _mm512_fmadd_ps(x, load(w + 5 * ldw + kk), s5);
      s6 = _mm512_fmadd_ps(x, load(w + 6 * ldw + kk), s6);
      s7 = _mm512_fmadd_ps(x, load(w + 7 * ldw + kk), s7);
    };
    for (int64_t kk = 0; kk < k16; kk += 16) {
      step(kk, _mm512_loadu_ps(a + kk), [](const float* q) { return _mm512_loadu_ps(q); });
    }
    if (k16 < k) {
      step(k16, _mm512_maskz_loadu_ps(tail, a + k16), [&](const float* q) { return _mm512_maskz_loadu_ps(tail, q); });
    }
    c[j] = _mm512_reduce_add_ps(s0);
    c[j + 1] = _mm512_reduce_add_ps(s1);
    c[j + 2] = _mm512_reduce_add_ps(s2);
    c[j + 3] = _mm512_reduce_add_ps(s3);
    c[j + 4] = _mm512_reduce_add_ps(s4);
    c[j + 5] = _mm512_reduce_add_ps(s5);
    c[j + 6] = _mm512_reduce_add_ps(s6);
    c[j + 7] = _mm512_reduce_add_ps(s7);
  }
  for (; j < n; ++j) {
    const float* w = W + j * ldw;
    __m512 s = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < k16; kk += 16) s = _mm512_fmadd_ps(_mm512_loadu_ps(a + kk), _mm512_loadu_ps(w + kk), s);
    if (k16 < k) s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, a + k16), _mm512_maskz_loadu_ps(tail, w + k16), s);
    c[j] = _mm512_reduce_add_ps(s);
  }
}

}  // namespace avx512
#pragma GCC pop_options

namespace {
// FUSEDRNN_PACKED_GEMM, read per layer call (for A/B runs): "0", "1", or "" when unset.
std::string switch_value() {
  const char* e = std::getenv("FUSEDRNN_PACKED_GEMM");
  return e ? e : "";
}
}  // namespace

bool available() { return switch_value() != "0"; }

// The kernels' instruction set: AVX-512 where the CPU has it (the AVX2 kernels reach about 40% of
// its peak there: 55-76 GFLOP/s on one core of an Intel Xeon where MKL's AVX-512 sgemm runs
// 140-150), else AVX2. FUSEDRNN_PACKED_ISA=avx2 keeps to AVX2 (comparisons, tests), =avx512 asks
// for AVX-512 (an error where the CPU has none); read per call.
bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  return has;
}

bool use_avx512() {
  const char* e = std::getenv("FUSEDRNN_PACKED_ISA");
  if (e == nullptr || *e == '\0') return cpu_has_avx512();
  const std::string v(e);
  TORCH_CHECK(v == "avx2" || v == "avx512", "fusedrnn: FUSEDRNN_PACKED_ISA must be avx2 or avx512, got '", v, "'");
  TORCH_CHECK(v == "avx2" || cpu_has_avx512(), "fusedrnn: FUSEDRNN_PACKED_ISA=avx512, but this CPU has no AVX-512");
  return v == "avx512";
}

const char* isa() { return available() ? (use_avx512() ? "avx512" : "avx2") : "none"; }

bool worth_packing(int64_t rows) {
  const std::string v = switch_value();
  return v != "0" && (rows >= kMinRows || v == "1");
}

bool forced() { return switch_value() == "1"; }

namespace {

// gemm's AVX2 body for one block: rows [m0, m1) against panels [p0, p1), over k rows [k0, k0 + kb).
void gemm_block_avx2(const float* A, int64_t lda, const float* W, int64_t n, int64_t k, float* C, int64_t ldc,
                     bool accumulate, int64_t m0, int64_t m1, int64_t p0, int64_t p1, int64_t k0, int64_t kb) {
  const int64_t pstride = k * kPanel;
  // One row (a batch of one split by units, the last rows of a packed batch): four full panels at
  // a time. A unit-split LSTM of hidden 1024 at batch 1, 100 steps on 2 threads: 24.8 -> 18.3 ms.
  if (m1 - m0 == 1) {
    for (; p0 + 4 <= p1 && (p0 + 4) * kPanel <= n; p0 += 4) {
      row_tile4(kb, A + m0 * lda + k0, W + p0 * pstride + k0 * kPanel, pstride, C + m0 * ldc + p0 * kPanel,
                accumulate);
    }
  }
  // The rows in ceil(rows / 6) tiles of near-equal height (13 rows: 5 + 4 + 4, not 6 + 6 + 1): a
  // tile of r rows has 2r independent accumulator chains, and the FMA units' latency needs about 8
  // of them; a 1-row tile runs at a quarter of the speed.
  const int64_t rows = m1 - m0, tiles = (rows + kRows - 1) / kRows;
  const int64_t base = tiles ? rows / tiles : 0, taller = tiles ? rows % tiles : 0;
  for (int64_t p = p0; p < p1; ++p) {
    const float* B = W + p * pstride + k0 * kPanel;
    const int64_t width = std::min(kPanel, n - p * kPanel);
    int64_t r = m0;
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t height = base + (t < taller ? 1 : 0);
      const float* a = A + r * lda + k0;
      float* c = C + r * ldc + p * kPanel;
      if (width <= 8) {
        tile_of_height<true>(height, kb, a, lda, B, c, ldc, width, accumulate);
      } else {
        tile_of_height<false>(height, kb, a, lda, B, c, ldc, width, accumulate);
      }
      r += height;
    }
  }
}

}  // namespace

void gemm(int64_t m, const float* A, int64_t lda, const PackedWeight& W, float beta, float* C, int64_t ldc) {
  const int64_t n = W.n(), k = W.k(), panels = (n + kPanel - 1) / kPanel;
  const bool accumulate = beta != 0.f, wide = use_avx512();
  auto block = [&](int64_t m0, int64_t m1, int64_t p0, int64_t p1, int64_t k0, int64_t kb) {
    const bool acc = accumulate || k0 > 0;
    if (wide) {
      avx512::gemm_block(A, lda, W.data(), n, k, C, ldc, acc, m0, m1, p0, p1, k0, kb);
    } else {
      gemm_block_avx2(A, lda, W.data(), n, k, C, ldc, acc, m0, m1, p0, p1, k0, kb);
    }
  };
  // A step's rows (up to kMaxStepRows), or a small product: one block, every panel read once,
  // whatever k: a step's weight may come from L3 (a unit slice of an LSTM of hidden 1152), and
  // reading it once with A from L2 beat chunks of 6 rows that each read it again (one thread, 16
  // rows x 1152 x 2304: 2.3 vs 3.1 ms). Up to 64 rows while A stays within L2: one thread on a
  // Zen 4, GFLOP/s, three rounds, blocked (below) -> one block: 48 x 2304 x 1152 96-97 -> 103-110,
  // 64 x 2304 x 1152 95-102 -> 106-108 (awd_lstm_b64's unit-split step), 64 x 1024 x 512 111-113
  // -> 113-115; 32 rows unchanged.
  if (m <= 32 || (m <= kMaxStepRows && m * k <= kMaxStepA) || m * k <= 8192) return block(0, m, 0, panels, 0, k);
  // Larger products in blocks: kBlockK rows of the weight at a time, in groups of panels of about
  // 512 KB that stay in L2 while chunks of A's rows (about 24 KB, in L1) pass over them. Without it
  // every 6-row chunk read the whole weight again: 1536 x 1152 x 2304 on one core ran at 63
  // GFLOP/s (AVX-512) against MKL's 150.
  const int64_t kc = std::min(k, kBlockK);
  const int64_t group = std::max<int64_t>(2, (int64_t(1) << 19) / (kc * kPanel * int64_t(sizeof(float))) / 2 * 2);
  const int64_t mc = std::max<int64_t>(24, 6144 / kc / 24 * 24);
  for (int64_t k0 = 0; k0 < k; k0 += kc) {
    const int64_t kb = std::min(kc, k - k0);
    for (int64_t p0 = 0; p0 < panels; p0 += group) {
      const int64_t p1 = std::min(panels, p0 + group);
      for (int64_t m0 = 0; m0 < m; m0 += mc) block(m0, std::min(m, m0 + mc), p0, p1, k0, kb);
    }
  }
}

namespace {

// One 6 x 16 tile of a weight gradient over L packed rows: g holds 6 rows of C per packed row
// ([L][6], zero past M), a 16 columns ([L][16], zero past Kc). Stores mr rows of width columns,
// ldc apart, added to C when accumulate.
template <bool Narrow>  // width <= 8: the panel's first vector only
inline void grad_tile(int64_t L, const float* g, const float* a, float* C, int64_t ldc, int64_t mr,
                      int64_t width, bool accumulate) {
  if (accumulate) {  // C's rows, while the products run
    for (int64_t r = 0; r < mr; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + kPanel - 1), _MM_HINT_T0);
    }
  }
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t l = 0; l < L; ++l, g += kRows, a += kPanel) {
    const __m256 b0 = _mm256_loadu_ps(a), b1 = Narrow ? b0 : _mm256_loadu_ps(a + 8);
    __m256 x;
#define FUSEDRNN_ROW(r)                                         \
  x = _mm256_broadcast_ss(g + r);                               \
  c##r##0 = _mm256_fmadd_ps(x, b0, c##r##0);                    \
  if constexpr (!Narrow) c##r##1 = _mm256_fmadd_ps(x, b1, c##r##1);
    FUSEDRNN_ROW(0) FUSEDRNN_ROW(1) FUSEDRNN_ROW(2) FUSEDRNN_ROW(3) FUSEDRNN_ROW(4) FUSEDRNN_ROW(5)
#undef FUSEDRNN_ROW
  }
  const __m256 acc[kRows][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int64_t r = 0; r < mr; ++r) store_row(C + r * ldc, acc[r][0], acc[r][1], width, accumulate);
}

// One thread's share of weight_grad: its segments' rows, packed a chunk at a time.
void weight_grad_rows(int64_t M, const float* G, int64_t ldg, int64_t K1, const float* A1, int64_t lda1,
                      int64_t K2, bool ones, const std::vector<GradSegment>& segments, float* C) {
  const int64_t Kc = K1 + K2 + (ones ? 1 : 0);
  const int64_t tiles = (M + kRows - 1) / kRows, panels = (Kc + kPanel - 1) / kPanel;
  // Chunks of kGradRows packed rows; each chunk's products add into all of C, so C (M x Kc, up to
  // tens of MB for a large layer) is read and written once per chunk: chunks of 16 rows, as a
  // bound on both packed operands' size used to give an LSTM of hidden 1152, took 440 ms against
  // MKL's 65 for its weight gradients. The products go over blocks of kTileBlock G tiles (a block
  // of L x 6 kTileBlock floats, 96 KB, stays in L2), each against every panel in turn.
  const int64_t L = kGradRows;
  const int64_t tile_stride = (L + 1) * kRows;  // one spare row: a tile row is written 8 floats wide
  // The panels 64-byte aligned (so are cpu_pool's buffers, and gp's size is rounded up to 16
  // floats): a panel row's two vectors never straddle a cache line.
  const int64_t gp_size = (tiles * tile_stride + kPanel - 1) / kPanel * kPanel;
  const at::Tensor buffers = cpu_pool::empty({gp_size + panels * L * kPanel}, at::TensorOptions().dtype(at::kFloat));
  float* const gp = buffers.data_ptr<float>();
  float* const ap = gp + gp_size;
  std::vector<float> row(panels * kPanel, 0.f);
  if (ones) row[K1 + K2] = 1.f;
  bool first = true;
  int64_t l = 0;
  const bool wide = use_avx512();
  auto flush = [&] {
    for (int64_t ib = 0; ib < tiles; ib += kTileBlock) {
      const int64_t ie = std::min(tiles, ib + kTileBlock);
      for (int64_t jp = 0; jp < panels; jp += wide ? 2 : 1) {
        const float* a = ap + jp * L * kPanel;
        const int64_t width = std::min(kPanel, Kc - jp * kPanel);
        const int64_t width1 = jp + 1 < panels ? std::min(kPanel, Kc - (jp + 1) * kPanel) : 0;
        for (int64_t ip = ib; ip < ie; ++ip) {
          float* c = C + ip * kRows * Kc + jp * kPanel;
          const int64_t mr = std::min<int64_t>(kRows, M - ip * kRows);
          const float* g = gp + ip * tile_stride;
          if (wide) {
            if (width1 > 0) {
              avx512::grad_tile<2>(l, g, a, L * kPanel, c, Kc, mr, width, width1, !first);
            } else {
              avx512::grad_tile<1>(l, g, a, L * kPanel, c, Kc, mr, width, 0, !first);
            }
          } else if (width <= 8) {
            grad_tile<true>(l, g, a, c, Kc, mr, width, !first);
          } else {
            grad_tile<false>(l, g, a, c, Kc, mr, width, !first);
          }
        }
      }
    }
    first = false;
    l = 0;
  };
  for (const GradSegment& seg : segments) {
    for (int64_t i = 0; i < seg.rows; ++i) {
      const float* g = G + (seg.row + i) * ldg;
      int64_t ip = 0;
      for (; ip * kRows + 8 <= M; ++ip) {
        _mm256_storeu_ps(gp + ip * tile_stride + l * kRows, _mm256_loadu_ps(g + ip * kRows));
      }
      for (; ip < tiles; ++ip) {
        float* d = gp + ip * tile_stride + l * kRows;
        for (int64_t r = 0; r < kRows; ++r) d[r] = ip * kRows + r < M ? g[ip * kRows + r] : 0.f;
      }
      // Panels wholly inside A1 or A2 straight from there; the (at most two) panels across their
      // borders or past them assembled in `row` (a libc memcpy of each row cost 6% of a
      // fastai_rnn training step in perf).
      const float* a1 = A1 + (seg.row + i) * lda1;
      const float* a2 = seg.a2 + i * K2;
      for (int64_t jp = 0; jp < panels; ++jp) {
        const int64_t c0 = jp * kPanel, c1 = c0 + kPanel;
        const float* src;
        if (c1 <= K1) {
          src = a1 + c0;
        } else if (c0 >= K1 && c1 <= K1 + K2) {
          src = a2 + (c0 - K1);
        } else {
          for (int64_t c = c0; c < std::min(c1, K1); ++c) row[c] = a1[c];
          for (int64_t c = std::max(c0, K1); c < std::min(c1, K1 + K2); ++c) row[c] = a2[c - K1];
          src = row.data() + c0;
        }
        float* d = ap + (jp * L + l) * kPanel;
        _mm256_storeu_ps(d, _mm256_loadu_ps(src));
        _mm256_storeu_ps(d + 8, _mm256_loadu_ps(src + 8));
      }
      if (++l == L) flush();
    }
  }
  if (l > 0 || first) flush();  // no rows at all: C = 0 (tiles over zero rows)
}

}  // namespace

void weight_grad(int64_t M, const float* G, int64_t ldg, int64_t K1, const float* A1, int64_t lda1, int64_t K2,
                 bool ones, const GradSegment* segments, int64_t count, float* C) {
  const int64_t Kc = K1 + K2 + (ones ? 1 : 0);
  if (M == 0 || Kc == 0) return;
  int64_t N = 0;
  for (int64_t i = 0; i < count; ++i) N += segments[i].rows;
  // Threads take a contiguous share of the rows each (of at least about 4 MFLOP), summed into a
  // partial C of their own, added in thread order. Measured on 2 threads, faster than threads
  // taking rows of C over all rows of G (which packs [A1 | A2 | 1] twice): imdb_rnn's shape
  // (16384 rows, 256 x 356) 20.6 vs 22.5 ms, fastai_rnn's 6.1 vs 6.7.
  const int64_t P = at::in_parallel_region()
                        ? 1
                        : std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), 2 * N * M * Kc >> 22));
  const at::Tensor partial = cpu_pool::empty({(P - 1) * M * Kc}, at::TensorOptions().dtype(at::kFloat));
  at::parallel_for(0, P, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      // This thread's rows: [N p / P, N (p + 1) / P) of the segments' rows in order.
      const int64_t lo = N * p / P, hi = N * (p + 1) / P;
      std::vector<GradSegment> mine;
      int64_t at_row = 0;
      for (int64_t i = 0; i < count; ++i) {
        const GradSegment& s = segments[i];
        const int64_t b = std::max(lo, at_row), e = std::min(hi, at_row + s.rows);
        if (b < e) mine.push_back({s.row + (b - at_row), s.a2 ? s.a2 + (b - at_row) * K2 : nullptr, e - b});
        at_row += s.rows;
      }
      float* out = p == 0 ? C : partial.data_ptr<float>() + (p - 1) * M * Kc;
      weight_grad_rows(M, G, ldg, K1, A1, lda1, K2, ones, mine, out);
    }
  });
  for (int64_t p = 1; p < P; ++p) {
    const float* src = partial.data_ptr<float>() + (p - 1) * M * Kc;
    for (int64_t i = 0; i < M * Kc; ++i) C[i] += src[i];
  }
}

namespace {
inline float hsum(__m256 v) {
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 d = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
}

// gemv_rows on AVX2: eight rows of W at a time, 8 of k a vector; k's tail in scalar.
void gemv_rows_avx2(int64_t n, int64_t k, const float* a, const float* W, int64_t ldw, float* c) {
  const int64_t k8 = k / 8 * 8;
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const float* w = W + j * ldw;
    __m256 s[8];
    for (int r = 0; r < 8; ++r) s[r] = _mm256_setzero_ps();
    for (int64_t kk = 0; kk < k8; kk += 8) {
      const __m256 x = _mm256_loadu_ps(a + kk);
      s[0] = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + kk), s[0]);
      s[1] = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + ldw + kk), s[1]);
      s[2] = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + 2 * ldw + kk), s[2]);
      s[3] = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + 3 * ldw + kk), s[3]);
      s[4] = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + 4 * ldw + kk), s[4]);
      s[5] = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + 5 * ldw + kk), s[5]);
      s[6] = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + 6 * ldw + kk), s[6]);
      s[7] = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + 7 * ldw + kk), s[7]);
    }
    for (int r = 0; r < 8; ++r) {
      float t = hsum(s[r]);
      for (int64_t kk = k8; kk < k; ++kk) t += a[kk] * w[r * ldw + kk];
      c[j + r] = t;
    }
  }
  for (; j < n; ++j) {
    const float* w = W + j * ldw;
    __m256 s = _mm256_setzero_ps();
    for (int64_t kk = 0; kk < k8; kk += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(a + kk), _mm256_loadu_ps(w + kk), s);
    float t = hsum(s);
    for (int64_t kk = k8; kk < k; ++kk) t += a[kk] * w[kk];
    c[j] = t;
  }
}
}  // namespace

void gemv_rows(int64_t n, int64_t k, const float* a, const float* W, int64_t ldw, float* c) {
  if (use_avx512()) {
    avx512::gemv_rows(n, k, a, W, ldw, c);
  } else {
    gemv_rows_avx2(n, k, a, W, ldw, c);
  }
}

#else  // no AVX2: the callers keep to the BLAS

bool available() { return false; }
const char* isa() { return "none"; }
bool forced() { return false; }
bool worth_packing(int64_t) { return false; }

void gemm(int64_t, const float*, int64_t, const PackedWeight&, float, float*, int64_t) {
  TORCH_CHECK(false, "fusedrnn: the packed step product needs an AVX2 build");
}
void gemv_rows(int64_t, int64_t, const float*, const float*, int64_t, float*) {
  TORCH_CHECK(false, "fusedrnn: the row product needs an AVX2 build");
}
void weight_grad(int64_t, const float*, int64_t, int64_t, const float*, int64_t, int64_t, bool, const GradSegment*,
                 int64_t, float*) {
  TORCH_CHECK(false, "fusedrnn: the packed weight gradient needs an AVX2 build");
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

// [G^T A1 | G^T A2 | G^T 1] with the rows cut into segments of the given sizes (tests).
at::Tensor packed_weight_grad(const at::Tensor& g, const at::Tensor& a1, const c10::optional<at::Tensor>& a2,
                              bool ones, at::IntArrayRef segment_rows) {
  TORCH_CHECK(available(), "fusedrnn: the packed weight gradient is not in this build (it needs AVX2) or is "
              "turned off (FUSEDRNN_PACKED_GEMM=0)");
  const bool has_a2 = a2.has_value() && a2->defined();
  TORCH_CHECK(g.scalar_type() == at::kFloat && a1.scalar_type() == at::kFloat &&
                  (!has_a2 || a2->scalar_type() == at::kFloat),
              "fusedrnn: _packed_weight_grad takes float32");
  TORCH_CHECK(g.dim() == 2 && a1.dim() == 2 && (!has_a2 || a2->dim() == 2),
              "fusedrnn: _packed_weight_grad takes 2-d tensors");
  const int64_t N = g.size(0);
  TORCH_CHECK(a1.size(0) == N && (!has_a2 || a2->size(0) == N), "fusedrnn: _packed_weight_grad: g has ", N,
              " rows, a1 ", a1.size(0), has_a2 ? ", a2 " + std::to_string(a2->size(0)) : std::string());
  const at::Tensor G = g.contiguous(), A1 = a1.contiguous(), A2 = has_a2 ? a2->contiguous() : at::Tensor();
  const int64_t M = G.size(1), K1 = A1.size(1), K2 = has_a2 ? A2.size(1) : 0;
  std::vector<GradSegment> segments;
  int64_t row = 0;
  for (const int64_t n : segment_rows) {
    TORCH_CHECK(n >= 0 && row + n <= N, "fusedrnn: _packed_weight_grad: segments past the ", N, " rows");
    segments.push_back({row, has_a2 ? A2.data_ptr<float>() + row * K2 : nullptr, n});
    row += n;
  }
  TORCH_CHECK(row == N, "fusedrnn: _packed_weight_grad: segments cover ", row, " of ", N, " rows");
  at::Tensor out = at::empty({M, K1 + K2 + (ones ? 1 : 0)}, g.options());
  weight_grad(M, G.data_ptr<float>(), M, K1, A1.data_ptr<float>(), K1, K2, ones, segments.data(),
              static_cast<int64_t>(segments.size()), out.data_ptr<float>());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
  m.impl("_packed_step_gemm", &packed_step_gemm);
  m.impl("_packed_weight_grad", &packed_weight_grad);
}

}  // namespace cpu_packed
}  // namespace fusedrnn
