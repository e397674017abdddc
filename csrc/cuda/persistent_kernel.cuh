// The CUDA backend's persistent path: one cooperative launch runs every step of a layer and
// direction, each block owning a slice of the hidden units with all gates of those units, their
// rows of W_hh resident in the block's shared memory for the whole launch.
//   Forward, per step: each block reads h_prev (the previous step's output rows, hx for rows that
//   start at this step) in chunks of R rows into shared memory, multiplies them by its slice,
//   adds the precomputed input projection and the biases, applies the cell
//   (cell_elements.cuh) and writes its units' state, output and reserve; then a grid barrier.
//   Backward, per step: each block computes its units' gate gradients, a grid barrier, then its
//   units' dh_prev = dG @ W_hh[:, slice] with W_hh's columns of the slice resident. One grid barrier
//   a step in both passes, as the CPU's unit split (csrc/cpu/layer_kernel.cpp) does with threads.
// Packed batches compute only the batch_sizes[t] active rows; each row's final state is in hy at
// its own last step. No atomics, no host synchronisation. The products: float32 on FFMA (the slice
// held in float; TF32 is not used, see docs/performance.md); half and bfloat16 on tensor cores
// (wmma m16n16k16 tiles of the storage type, float accumulation; the cell state and all cell math in
// float). float64 and LSTM projections keep the standard path. FUSEDRNN_CUDA_PATH=standard|persistent forces a path (unset: persistent where
// the slices fit in shared memory with every block resident, checked with the occupancy query;
// forced, a layer that does not fit is an error).
#pragma once

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "../layer_driver.h"
#include "cell_elements.cuh"

namespace fusedrnn {
namespace {
namespace persistent {

constexpr int kThreads = 256;  // a block per multiprocessor at most: __launch_bounds__(kThreads, 1) leaves ptxas every register
constexpr int64_t kMaxChunkRows = 32;

// The shape a persistent launch works on; everything the kernels need of LayerShape, by value.
struct Shape {
  int cell;  // CellType
  int64_t G, T, B, H, Hr, RW;
  bool reverse;
  int64_t U;                   // units per block (the last block's slice may be shorter)
  int64_t R;                   // forward: rows per chunk of h_prev in shared memory
  const int64_t* batch_sizes;  // [T], device
  const int64_t* offsets;      // [T], device
};

template <typename scalar_t, typename acc_t>
struct ForwardArgs {
  Shape s;
  const scalar_t* w_hh;  // [G*H, Hr]
  const acc_t* xw;       // [N, G*H] rows xw_ld apart, b_ih not in it
  int64_t xw_ld;
  const scalar_t* bih;
  const scalar_t* bhh;
  const scalar_t* hx;  // [B, Hr]
  scalar_t* hy;        // [B, Hr] hx in, h_n out
  acc_t* c;            // [B, H] LSTM
  scalar_t* out;       // [N, Hr]
  acc_t* reserve;      // [N, RW] or nullptr
};

template <typename scalar_t, typename acc_t>
struct BackwardArgs {
  Shape s;
  const scalar_t* w_hh;    // [G*H, Hr]
  const acc_t* reserve;    // [N, RW]
  const scalar_t* out;     // [N, Hr]
  const scalar_t* h0;      // [B, Hr]
  const scalar_t* h_prev;  // [N, Hr] packed layers, or nullptr
  const acc_t* c_prev;     // [N, H] LSTM
  const scalar_t* dy;      // rows dy_ld apart, or nullptr
  int64_t dy_ld;
  scalar_t* dh;  // [B, Hr]
  acc_t* dc;     // [B, H] LSTM
  scalar_t* dg_x;
  scalar_t* dg_h;
};

__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ int round_up(int v, int m) { return (v + m - 1) / m * m; }

// The tensor-core element type of a storage type: half and bfloat16 multiply on tensor cores
// (wmma m16n16k16, float accumulation); float32 (FFMA) and float64 have none.
template <typename scalar_t>
struct TensorCore {
  static constexpr bool kOn = false;
  using type = scalar_t;
};
template <>
struct TensorCore<c10::Half> {
  static constexpr bool kOn = true;
  using type = __half;
};
template <>
struct TensorCore<c10::BFloat16> {
  static constexpr bool kOn = true;
  using type = __nv_bfloat16;
};

// Where each array of a kernel lies in its dynamic shared memory (byte offsets, 128-aligned) and
// its leading dimension (in elements); computed the same way by the host's plan and the kernel.
//   forward: w  the slice, row g U + jj = W_hh row g H + u0 + jj    [w_rows, ldw]
//            h  a chunk of R rows of h_prev                           [h_rows, ldh]
//            p  their products, row r, column g U + jj                [h_rows, ldp]
//   backward: w  W_hh's columns of the slice, row jj = W_hh[:, u0 + jj] [w_rows, ldw]
//             a, c  per warp, a 16 x 16 tile of dG_h and of the products (tensor cores only)
// FFMA: float rows padded by one element against bank conflicts. Tensor cores: storage-type tiles
// padded with zeros to multiples of 16, rows 8 elements longer (wmma's ldm is a multiple of 16 bytes).
struct SmemLayout {
  int ldw, w_rows, ldh, h_rows, ldp;
  int64_t w_off, h_off, p_off, a_off, c_off, bytes;
};

__host__ __device__ __forceinline__ int64_t align128(int64_t v) { return (v + 127) / 128 * 128; }

template <typename scalar_t, typename acc_t>
__host__ __device__ __forceinline__ SmemLayout forward_layout(const Shape& s) {
  SmemLayout l{};
  const int GU = static_cast<int>(s.G * s.U), Hr = static_cast<int>(s.Hr), R = static_cast<int>(s.R);
  if (TensorCore<scalar_t>::kOn) {
    l.w_rows = round_up(GU, 16);
    l.ldw = l.ldh = round_up(Hr, 16) + 8;
    l.h_rows = round_up(R, 16);
    l.ldp = round_up(GU, 16) + 4;
    l.w_off = 0;
    l.h_off = align128(int64_t(l.w_rows) * l.ldw * int64_t(sizeof(scalar_t)));
    l.p_off = l.h_off + align128(int64_t(l.h_rows) * l.ldh * int64_t(sizeof(scalar_t)));
    l.bytes = l.p_off + int64_t(l.h_rows) * l.ldp * int64_t(sizeof(float));
  } else {
    l.w_rows = GU;
    l.ldw = Hr + 1;
    l.h_rows = R;
    l.ldh = Hr;
    l.ldp = GU;
    l.w_off = 0;
    l.h_off = align128(int64_t(l.w_rows) * l.ldw * int64_t(sizeof(acc_t)));
    l.p_off = l.h_off + align128(int64_t(l.h_rows) * l.ldh * int64_t(sizeof(acc_t)));
    l.bytes = l.p_off + int64_t(l.h_rows) * l.ldp * int64_t(sizeof(acc_t));
  }
  l.a_off = l.c_off = 0;
  return l;
}

template <typename scalar_t, typename acc_t>
__host__ __device__ __forceinline__ SmemLayout backward_layout(const Shape& s) {
  SmemLayout l{};
  const int GH = static_cast<int>(s.G * s.H), U = static_cast<int>(s.U);
  constexpr int kWarps = kThreads / 32;
  if (TensorCore<scalar_t>::kOn) {
    l.w_rows = round_up(U, 16);
    l.ldw = round_up(GH, 16) + 8;
    l.a_off = align128(int64_t(l.w_rows) * l.ldw * int64_t(sizeof(scalar_t)));
    l.c_off = l.a_off + align128(int64_t(kWarps) * 256 * int64_t(sizeof(scalar_t)));
    l.bytes = l.c_off + int64_t(kWarps) * 256 * int64_t(sizeof(float));
  } else {
    l.w_rows = U;
    l.ldw = GH + 1;
    l.a_off = l.c_off = 0;
    l.bytes = int64_t(l.w_rows) * l.ldw * int64_t(sizeof(acc_t));
  }
  l.ldh = l.h_rows = l.ldp = 0;
  l.w_off = l.h_off = l.p_off = 0;
  return l;
}

// One warp's 16 x 16 tile of A B^T over k in [0, K): A [16, K] row-major (lda), B [16, K] row-major
// (ldb, read as a column-major K x 16), both padded with zeros to a multiple of 16 columns.
template <typename mma_t>
__device__ __forceinline__ void tile_product(const mma_t* A, int lda, const mma_t* B, int ldb, int K, float* C,
                                             int ldc) {
  namespace wmma = nvcuda::wmma;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  for (int k0 = 0; k0 < K; k0 += 16) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, mma_t, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, mma_t, wmma::col_major> fb;
    wmma::load_matrix_sync(fa, A + k0, lda);
    wmma::load_matrix_sync(fb, B + k0, ldb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
  wmma::store_matrix_sync(C, acc, ldc, wmma::mem_row_major);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads, 1) forward_kernel(ForwardArgs<scalar_t, acc_t> a) {
  constexpr bool kMma = TensorCore<scalar_t>::kOn;
  using slice_t = std::conditional_t<kMma, scalar_t, acc_t>;  // what the slice and the h chunk hold
  cg::grid_group grid = cg::this_grid();
  const Shape& s = a.s;
  const SmemLayout l = forward_layout<scalar_t, acc_t>(s);
  const int64_t u0 = static_cast<int64_t>(blockIdx.x) * s.U;
  const int U = static_cast<int>(min64(s.U, s.H - u0)), GU = static_cast<int>(s.G) * U;
  const int Hr = static_cast<int>(s.Hr), H = static_cast<int>(s.H);
  const int tid = threadIdx.x, nt = blockDim.x, warp = tid / 32, warps = nt / 32;
  unsigned char* smem = compat::dynamic_smem<unsigned char>();
  slice_t* w_s = reinterpret_cast<slice_t*>(smem + l.w_off);
  slice_t* h_s = reinterpret_cast<slice_t*>(smem + l.h_off);
  acc_t* pre_s = reinterpret_cast<acc_t*>(smem + l.p_off);
  if (kMma) {  // the padding of the tiles: zeros
    for (int idx = tid; idx < l.w_rows * l.ldw; idx += nt) w_s[idx] = static_cast<slice_t>(0.0f);
    for (int idx = tid; idx < l.h_rows * l.ldh; idx += nt) h_s[idx] = static_cast<slice_t>(0.0f);
    __syncthreads();
  }
  for (int idx = tid; idx < GU * Hr; idx += nt) {
    const int row = idx / Hr, k = idx - row * Hr, g = row / U, jj = row - g * U;
    w_s[row * l.ldw + k] = static_cast<slice_t>(a.w_hh[(int64_t(g) * H + u0 + jj) * Hr + k]);
  }
  __syncthreads();
  const bool relu = s.cell == static_cast<int>(CellType::RNN_RELU);
  for (int64_t step = 0; step < s.T; ++step) {
    const int64_t t = s.reverse ? s.T - 1 - step : step, off = s.offsets[t];
    const int b = static_cast<int>(s.batch_sizes[t]);
    const int64_t tp = s.reverse ? t + 1 : t - 1;
    // h_prev: rows [0, n_prev) are the output rows of the step before, the rest start here (hx).
    const int n_prev = step == 0 ? 0 : static_cast<int>(min64(b, s.batch_sizes[tp]));
    const scalar_t* prev = step == 0 ? a.hx : a.out + s.offsets[tp] * Hr;
    ForwardStep<scalar_t, acc_t> p;
    p.xw = a.xw + off * a.xw_ld;
    p.xw_ld = a.xw_ld;
    p.bih = a.bih;
    p.hw = nullptr;
    p.bhh = a.bhh;
    p.h = a.hy;
    p.c = a.c;
    p.out = a.out + off * Hr;
    p.h_raw = nullptr;
    p.reserve = a.reserve ? a.reserve + off * s.RW : nullptr;
    for (int r0 = 0; r0 < b; r0 += static_cast<int>(s.R)) {
      const int rows = static_cast<int>(min64(s.R, b - r0));
      for (int idx = tid; idx < rows * Hr; idx += nt) {
        const int r = idx / Hr, k = idx - r * Hr, row = r0 + r;
        const scalar_t v = row < n_prev ? prev[int64_t(row) * Hr + k] : a.hx[int64_t(row) * Hr + k];
        h_s[r * l.ldh + k] = static_cast<slice_t>(v);
      }
      __syncthreads();
      if constexpr (kMma) {
        using mma_t = typename TensorCore<scalar_t>::type;
        const int tiles_n = (GU + 15) / 16, tiles = (rows + 15) / 16 * tiles_n;
        for (int tile = warp; tile < tiles; tile += warps) {
          const int tr = tile / tiles_n, tn = tile - tr * tiles_n;
          tile_product(reinterpret_cast<const mma_t*>(h_s) + tr * 16 * l.ldh, l.ldh,
                       reinterpret_cast<const mma_t*>(w_s) + tn * 16 * l.ldw, l.ldw, l.ldh - 8,
                       pre_s + tr * 16 * l.ldp + tn * 16, l.ldp);
        }
      } else {
        for (int idx = tid; idx < rows * GU; idx += nt) {
          const int r = idx / GU, gu = idx - r * GU;
          const acc_t* h = h_s + r * l.ldh;
          const acc_t* w = w_s + gu * l.ldw;
          acc_t acc = 0;
          for (int k = 0; k < Hr; ++k) acc += h[k] * w[k];
          pre_s[r * l.ldp + gu] = acc;
        }
      }
      __syncthreads();
      for (int idx = tid; idx < rows * U; idx += nt) {
        const int r = idx / U, jj = idx - r * U;
        const int64_t row = r0 + r, j = u0 + jj;
        // Gate column o = g H + j of this row: the slice's product g U + jj.
        const acc_t* pr = pre_s + r * l.ldp + jj;
        auto hw = [&](int64_t o) { return pr[static_cast<int>(o / H) * U]; };
        switch (static_cast<CellType>(s.cell)) {
          case CellType::LSTM: lstm_forward_element(p, row, j, H, Hr, false, hw); break;
          case CellType::GRU: gru_forward_element(p, row, j, H, hw); break;
          default: rnn_forward_element(p, row, j, H, relu, hw);
        }
      }
      __syncthreads();  // h_s and pre_s are refilled by the next chunk
    }
    grid.sync();  // every unit of this step's output is written before any block reads it
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads, 1) backward_kernel(BackwardArgs<scalar_t, acc_t> a) {
  constexpr bool kMma = TensorCore<scalar_t>::kOn;
  using slice_t = std::conditional_t<kMma, scalar_t, acc_t>;
  cg::grid_group grid = cg::this_grid();
  const Shape& s = a.s;
  const SmemLayout l = backward_layout<scalar_t, acc_t>(s);
  const int64_t u0 = static_cast<int64_t>(blockIdx.x) * s.U;
  const int U = static_cast<int>(min64(s.U, s.H - u0));
  const int GH = static_cast<int>(s.G * s.H), Hr = static_cast<int>(s.Hr), H = static_cast<int>(s.H);
  const int tid = threadIdx.x, nt = blockDim.x, warp = tid / 32, lane = tid % 32, warps = nt / 32;
  unsigned char* smem = compat::dynamic_smem<unsigned char>();
  slice_t* w_s = reinterpret_cast<slice_t*>(smem + l.w_off);
  if (kMma) {
    for (int idx = tid; idx < l.w_rows * l.ldw; idx += nt) w_s[idx] = static_cast<slice_t>(0.0f);
    __syncthreads();
  }
  for (int idx = tid; idx < U * GH; idx += nt) {
    const int jj = idx / GH, k = idx - jj * GH;
    w_s[jj * l.ldw + k] = static_cast<slice_t>(a.w_hh[int64_t(k) * Hr + u0 + jj]);
  }
  __syncthreads();
  const bool relu = s.cell == static_cast<int>(CellType::RNN_RELU), gru = s.cell == static_cast<int>(CellType::GRU);
  for (int64_t step = 0; step < s.T; ++step) {
    const int64_t t = s.reverse ? step : s.T - 1 - step, off = s.offsets[t];
    const int b = static_cast<int>(s.batch_sizes[t]);
    BackwardStep<scalar_t, acc_t> p;
    p.reserve = a.reserve ? a.reserve + off * s.RW : nullptr;
    p.out = a.out + off * Hr;
    if (a.h_prev) {
      p.h_prev = a.h_prev + off * Hr;
    } else {
      const bool first = s.reverse ? t == s.T - 1 : t == 0;
      p.h_prev = first ? a.h0 : a.out + s.offsets[s.reverse ? t + 1 : t - 1] * Hr;
    }
    p.c_prev = a.c_prev ? a.c_prev + off * H : nullptr;
    p.dy = a.dy ? a.dy + off * a.dy_ld : nullptr;
    p.dy_ld = a.dy_ld;
    p.dh = a.dh;
    p.dc = a.dc;
    p.dg_x = a.dg_x + off * GH;
    p.dg_h = a.dg_h + off * GH;
    for (int idx = tid; idx < b * U; idx += nt) {
      const int r = idx / U;
      const int64_t j = u0 + (idx - r * U);
      switch (static_cast<CellType>(s.cell)) {
        case CellType::LSTM: lstm_backward_element(p, r, j, H, s.RW); break;
        case CellType::GRU: gru_backward_element(p, r, j, H); break;
        default: rnn_backward_element(p, r, j, H, relu);
      }
    }
    grid.sync();  // every unit's gate gradients of this step are written
    // dh_prev of the slice's units = dG_h @ W_hh[:, slice] (GRU: added to the direct part left in dh).
    if constexpr (kMma) {
      using mma_t = typename TensorCore<scalar_t>::type;
      scalar_t* a_s = reinterpret_cast<scalar_t*>(smem + l.a_off) + warp * 256;
      float* c_s = reinterpret_cast<float*>(smem + l.c_off) + warp * 256;
      const int tiles_n = (U + 15) / 16, tiles = (b + 15) / 16 * tiles_n;
      for (int tile = warp; tile < tiles; tile += warps) {
        const int tr = tile / tiles_n, tn = tile - tr * tiles_n;
        namespace wmma = nvcuda::wmma;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int k0 = 0; k0 < GH; k0 += 16) {
          for (int e = lane; e < 256; e += 32) {  // this warp's tile of dG_h, zeros past its rows and columns
            const int row = tr * 16 + e / 16, k = k0 + e % 16;
            a_s[e] = row < b && k < GH ? p.dg_h[int64_t(row) * GH + k] : static_cast<scalar_t>(0.0f);
          }
          __syncwarp();
          wmma::fragment<wmma::matrix_a, 16, 16, 16, mma_t, wmma::row_major> fa;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, mma_t, wmma::col_major> fb;
          wmma::load_matrix_sync(fa, reinterpret_cast<const mma_t*>(a_s), 16);
          wmma::load_matrix_sync(fb, reinterpret_cast<const mma_t*>(w_s) + tn * 16 * l.ldw + k0, l.ldw);
          wmma::mma_sync(acc, fa, fb, acc);
          __syncwarp();  // a_s is refilled
        }
        wmma::store_matrix_sync(c_s, acc, 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32) {
          const int row = tr * 16 + e / 16, jj = tn * 16 + e % 16;
          if (row < b && jj < U) {
            scalar_t& d = a.dh[int64_t(row) * Hr + u0 + jj];
            d = static_cast<scalar_t>(gru ? static_cast<float>(d) + c_s[e] : c_s[e]);
          }
        }
        __syncwarp();  // c_s is rewritten by the next tile
      }
    } else {
      for (int idx = tid; idx < b * U; idx += nt) {
        const int r = idx / U, jj = idx - r * U;
        const scalar_t* dg = p.dg_h + int64_t(r) * GH;
        const acc_t* w = w_s + jj * l.ldw;
        acc_t acc = 0;
        for (int k = 0; k < GH; ++k) acc += static_cast<acc_t>(dg[k]) * w[k];
        scalar_t& d = a.dh[int64_t(r) * Hr + u0 + jj];
        d = static_cast<scalar_t>(gru ? static_cast<acc_t>(d) + acc : acc);
      }
    }
    __syncthreads();  // the next step's pointwise pass reads this block's dh
  }
}

enum class Path { kAuto, kStandard, kPersistent };

// FUSEDRNN_CUDA_PATH, read per layer call.
inline Path path() {
  const char* e = std::getenv("FUSEDRNN_CUDA_PATH");
  if (e == nullptr || *e == '\0') return Path::kAuto;
  const std::string v(e);
  TORCH_CHECK(v == "standard" || v == "persistent", "fusedrnn: FUSEDRNN_CUDA_PATH must be standard or persistent, "
              "got '", v, "'");
  return v == "standard" ? Path::kStandard : Path::kPersistent;
}

// The shape of a call without its slices and device arrays.
inline Shape shape_of(const LayerShape& ls, bool reverse) {
  Shape s;
  s.cell = static_cast<int>(ls.cell);
  s.G = ls.G;
  s.T = ls.T;
  s.B = ls.B;
  s.H = ls.H;
  s.Hr = ls.Hr;
  s.RW = ls.reserve_width();
  s.reverse = reverse;
  s.U = s.R = 0;
  s.batch_sizes = s.offsets = nullptr;
  return s;
}

// The performance model's clocks of one block's step products (fusedrnn/gpu_model.py has the same
// rates): FFMA reads the slice and h from shared memory, two wavefronts a warp instruction, 16 FMA a
// clock; a wmma m16n16k16 tile reads 1 KB of shared memory, 8 clocks.
template <typename scalar_t>
int64_t product_clocks(const LayerShape& ls, const Shape& s, bool forward) {
  const int64_t B = ls.B, G = ls.G, U = s.U, H = ls.H;
  if (!TensorCore<scalar_t>::kOn) return B * G * U * H / 16;
  auto tiles = [](int64_t v) { return (v + 15) / 16; };
  return forward ? tiles(B) * tiles(G * U) * tiles(H) * 8 : tiles(B) * tiles(U) * tiles(G * H) * 8;
}
// Unset FUSEDRNN_CUDA_PATH picks the persistent path where the model's products stay under this (about
// 10 us at 1.98 GHz, what the standard path's per-step launches and GEMM cost at these shapes, per
// shared/GPU.md); to be calibrated on a GPU. A forced persistent path ignores it.
constexpr int64_t kAutoMaxProductClocks = 20000;

// The slices of a call: U units a block (one block per SM at most: the grid barrier needs every
// block resident), and the forward's rows per chunk (the most, up to kMaxChunkRows, that the shared
// memory leaves room for). False, with why, when they do not fit.
template <typename scalar_t, typename acc_t, auto Kernel>
bool plan(const LayerShape& ls, bool forward, bool automatic, Shape& s, size_t& smem, std::string& why) {
  const int64_t sms = compat::multiprocessor_count();
  const int64_t optin = static_cast<int64_t>(compat::max_smem_per_block_optin());
  s.U = (ls.H + sms - 1) / sms;
  s.R = std::min<int64_t>(ls.B, kMaxChunkRows);
  SmemLayout l = forward ? forward_layout<scalar_t, acc_t>(s) : backward_layout<scalar_t, acc_t>(s);
  while (forward && l.bytes > optin && s.R > 1) {
    --s.R;
    l = forward_layout<scalar_t, acc_t>(s);
  }
  smem = static_cast<size_t>(l.bytes);
  if (l.bytes > optin) {
    why = "a slice of " + std::to_string(s.U) + " units needs " + std::to_string(smem) +
          " bytes of shared memory, more than the " + std::to_string(optin) + " a block may have";
    return false;
  }
  const int64_t blocks = (ls.H + s.U - 1) / s.U;
  if (automatic) {
    const int64_t clocks = product_clocks<scalar_t>(ls, s, forward);
    if (clocks > kAutoMaxProductClocks) {
      why = "its step products would take about " + std::to_string(clocks) + " clocks a block, more than the " +
            std::to_string(kAutoMaxProductClocks) + " the automatic choice allows (docs/gpu-model.md)";
      return false;
    }
  }
  const int occupancy = compat::max_active_blocks_per_sm<Kernel>(kThreads, smem);
  if (occupancy < 1 || blocks > sms * occupancy) {
    why = std::to_string(blocks) + " blocks cannot all be resident (" + std::to_string(occupancy) + " a multiprocessor, " +
          std::to_string(sms) + " multiprocessors)";
    return false;
  }
  return true;
}

// Whether a call has a persistent kernel at all: float64 and LSTM projections keep to the standard
// path whatever FUSEDRNN_CUDA_PATH says (it forces the persistent path where one exists).
template <typename scalar_t>
bool eligible(const LayerShape& s) {
  return !std::is_same<scalar_t, double>::value && !s.proj;
}

// batch_sizes and offsets, [2, T], where the kernels can read them (copied without a host sync).
inline Tensor steps_on(const LayerShape& s, const c10::Device& device) {
  Tensor host = at::empty({2, s.T}, at::TensorOptions().dtype(at::kLong));
  int64_t* p = host.data_ptr<int64_t>();
  std::copy(s.batch_sizes.begin(), s.batch_sizes.end(), p);
  std::copy(s.offsets.begin(), s.offsets.end(), p + s.T);
  return compat::to_device(host, device);
}

// Runs the forward step loop as one persistent launch, or returns false (the standard path runs).
template <typename scalar_t, typename acc_t>
bool forward_launch(const ForwardCall<scalar_t, acc_t>& call, const Tensor& Whh, Path which) {
  const LayerShape& ls = *call.s;
  if (!eligible<scalar_t>(ls) || call.step_proj) return false;
  std::string why;
  Shape s = shape_of(ls, call.reverse);
  size_t smem = 0;
  if (!plan<scalar_t, acc_t, forward_kernel<scalar_t, acc_t>>(ls, true, which == Path::kAuto, s, smem, why)) {
    TORCH_CHECK(which != Path::kPersistent, "fusedrnn: FUSEDRNN_CUDA_PATH=persistent, but this layer does not fit "
                "the persistent kernel: ", why);
    return false;
  }
  const Tensor steps = steps_on(ls, Whh.device());
  s.batch_sizes = steps.data_ptr<int64_t>();
  s.offsets = s.batch_sizes + ls.T;
  const ForwardArgs<scalar_t, acc_t> args{s,        Whh.data_ptr<scalar_t>(), call.xw, call.xw_ld, call.bih,
                                          call.bhh, call.hx,                  call.hy, call.c,     call.out,
                                          call.reserve};
  const dim3 grid(static_cast<unsigned>((ls.H + s.U - 1) / s.U)), block(kThreads);
  compat::launch_cooperative<forward_kernel<scalar_t, acc_t>>(grid, block, smem, compat::current_stream(), args);
  return true;
}

// Runs the backward step loop as one persistent launch, or returns false.
template <typename scalar_t, typename acc_t>
bool backward_launch(const BackwardCall<scalar_t, acc_t>& call, const Tensor& Whh, Path which) {
  const LayerShape& ls = *call.s;
  if (!eligible<scalar_t>(ls)) return false;
  std::string why;
  Shape s = shape_of(ls, call.reverse);
  size_t smem = 0;
  if (!plan<scalar_t, acc_t, backward_kernel<scalar_t, acc_t>>(ls, false, which == Path::kAuto, s, smem, why)) {
    TORCH_CHECK(which != Path::kPersistent, "fusedrnn: FUSEDRNN_CUDA_PATH=persistent, but this layer does not fit "
                "the persistent kernel: ", why);
    return false;
  }
  const Tensor steps = steps_on(ls, Whh.device());
  s.batch_sizes = steps.data_ptr<int64_t>();
  s.offsets = s.batch_sizes + ls.T;
  const BackwardArgs<scalar_t, acc_t> args{s,           Whh.data_ptr<scalar_t>(), call.reserve, call.out,   call.h0,
                                           call.h_prev, call.c_prev,              call.dy,      call.dy_ld, call.dh,
                                           call.dc,     call.dg_x,                call.dg_h};
  const dim3 grid(static_cast<unsigned>((ls.H + s.U - 1) / s.U)), block(kThreads);
  compat::launch_cooperative<backward_kernel<scalar_t, acc_t>>(grid, block, smem, compat::current_stream(), args);
  return true;
}

// The backend's entry points: the persistent launch where it applies (the kernels are not even
// instantiated for float64, which has none), false where the standard path is to run.
template <typename scalar_t, typename acc_t>
bool forward(const ForwardCall<scalar_t, acc_t>& call, const Tensor& Whh) {
  const Path which = path();
  if constexpr (std::is_same<scalar_t, double>::value) {
    return false;
  } else {
    return which != Path::kStandard && forward_launch(call, Whh, which);
  }
}
template <typename scalar_t, typename acc_t>
bool backward(const BackwardCall<scalar_t, acc_t>& call, const Tensor& Whh) {
  const Path which = path();
  if constexpr (std::is_same<scalar_t, double>::value) {
    return false;
  } else {
    return which != Path::kStandard && backward_launch(call, Whh, which);
  }
}

}  // namespace persistent
}  // namespace
}  // namespace fusedrnn
