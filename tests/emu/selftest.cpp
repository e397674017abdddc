// The emulation layer's own tests (csrc/emu/emu.h): small CUDA kernels with known answers, and
// kernels with one deliberate bug each that the emulator must report. Built and run by
// tests/test_emu_runtime.py, plain and under AddressSanitizer + UBSan.
//
//   selftest CASE [SEED]   runs one case; prints "ok", "FAIL: ..." (exit 1) or, for the failure
//                          cases, "ERROR: <the emulator's message>" (exit 0)
//   selftest --list        the cases
//   selftest --convert     reads float bit patterns (hex, one a line) and prints each with its
//                          float16 and bfloat16 bits, for a comparison against numpy / torch
#include <algorithm>
#include <cstdio>
#include <iterator>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../csrc/emu/emu.h"

namespace cg = cooperative_groups;
namespace emu = fusedrnn::emu;

namespace {

std::string g_fail;
#define EXPECT(cond, ...)                                       \
  do {                                                          \
    if (!(cond) && g_fail.empty()) {                            \
      std::ostringstream os_;                                   \
      os_ << __LINE__ << ": " << #cond << " | " << __VA_ARGS__; \
      g_fail = os_.str();                                       \
    }                                                           \
  } while (0)

// ---- indices ------------------------------------------------------------------------------
__global__ void indices_kernel(unsigned* out) {
  const unsigned block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const unsigned nthreads = blockDim.x * blockDim.y * blockDim.z;
  const unsigned t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  unsigned* o = out + 8 * (block * nthreads + t);
  o[0] = blockIdx.x;
  o[1] = blockIdx.y;
  o[2] = blockIdx.z;
  o[3] = threadIdx.x;
  o[4] = threadIdx.y;
  o[5] = threadIdx.z;
  o[6] = blockDim.x * 1000 + blockDim.y * 100 + blockDim.z;
  o[7] = gridDim.x * 1000 + gridDim.y * 100 + gridDim.z;
}

void case_indices() {
  const dim3 grid(3, 2, 2), block(5, 3, 2);
  std::vector<unsigned> out(8 * 12 * 30, 12345);
  emu::launch<indices_kernel>(grid, block, 0, false, out.data());
  for (unsigned bz = 0; bz < 2; ++bz)
    for (unsigned by = 0; by < 2; ++by)
      for (unsigned bx = 0; bx < 3; ++bx)
        for (unsigned tz = 0; tz < 2; ++tz)
          for (unsigned ty = 0; ty < 3; ++ty)
            for (unsigned tx = 0; tx < 5; ++tx) {
              const unsigned b = (bz * 2 + by) * 3 + bx, t = (tz * 3 + ty) * 5 + tx;
              const unsigned* o = &out[8 * (b * 30 + t)];
              EXPECT(o[0] == bx && o[1] == by && o[2] == bz && o[3] == tx && o[4] == ty && o[5] == tz,
                     "block " << b << " thread " << t);
              EXPECT(o[6] == 5302 && o[7] == 3202, o[6] << " " << o[7]);
            }
}

// ---- shared memory ------------------------------------------------------------------------
__global__ void static_shared_kernel(int* out) {
  __shared__ int s[64];
  const int t = threadIdx.x;
  s[t] = t + 1000 * static_cast<int>(blockIdx.x);
  __syncthreads();
  out[blockIdx.x * 64 + t] = s[63 - t];
}

void case_static_shared() {
  const int blocks = 40;
  std::vector<int> out(blocks * 64, -7);
  emu::launch<static_shared_kernel>(dim3(blocks), dim3(64), 0, false, out.data());
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < 64; ++t) EXPECT(out[b * 64 + t] == 63 - t + 1000 * b, "block " << b << " thread " << t);
}

__global__ void dynamic_shared_kernel(float* first_read, int* bytes_ff, int n) {
  float* s = reinterpret_cast<float*>(emu::dynamic_smem());
  const int t = threadIdx.x;
  first_read[blockIdx.x * n + t] = s[t];
  const unsigned char* raw = reinterpret_cast<const unsigned char*>(s) + 4 * t;
  bytes_ff[blockIdx.x * n + t] = raw[0] == 0xFF && raw[1] == 0xFF && raw[2] == 0xFF && raw[3] == 0xFF;
  __syncthreads();
  s[t] = 1.0f;  // the next block on this worker must not see it
}

void case_dynamic_shared() {
  const int n = 96, blocks = 6;
  std::vector<float> first(n * blocks, 0.0f);
  std::vector<int> ff(n * blocks, 0);
  emu::set_workers(1);  // every block after the first reuses the same buffer
  emu::launch<dynamic_shared_kernel>(dim3(blocks), dim3(n), n * sizeof(float), false, first.data(), ff.data(), n);
  for (int i = 0; i < n * blocks; ++i) {
    EXPECT(first[i] != first[i], "element " << i << " = " << first[i] << ", not NaN");
    EXPECT(ff[i] == 1, "element " << i);
  }
}

// ---- block barriers -----------------------------------------------------------------------
__global__ void block_votes_kernel(int* out) {
  const int t = threadIdx.x;
  out[0 + 4 * t] = __syncthreads_count(t % 3 == 0);
  out[1 + 4 * t] = __syncthreads_and(t < 1000);
  out[2 + 4 * t] = __syncthreads_and(t != 17);
  out[3 + 4 * t] = __syncthreads_or(t == 99);
}

void case_syncthreads_votes() {
  const int n = 100;
  std::vector<int> out(4 * n, -1);
  emu::launch<block_votes_kernel>(dim3(1), dim3(n), 0, false, out.data());
  for (int t = 0; t < n; ++t) {
    EXPECT(out[4 * t] == 34, out[4 * t]);
    EXPECT(out[4 * t + 1] == 1 && out[4 * t + 2] == 0 && out[4 * t + 3] == 1, "thread " << t);
  }
}

// Tree reduction in dynamic shared memory; with `barriers` false, the barriers are missing.
__global__ void reduce_kernel(const float* x, float* out, bool barriers) {
  float* s = reinterpret_cast<float*>(emu::dynamic_smem());
  const unsigned t = threadIdx.x;
  s[t] = x[blockIdx.x * blockDim.x + t];
  if (barriers) __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (t < stride) s[t] += s[t + stride];
    if (barriers) __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

float run_reduce(bool barriers, std::vector<float>* per_block = nullptr) {
  const int n = 128, blocks = 5;
  std::vector<float> x(n * blocks), out(blocks, -1.0f);
  for (int i = 0; i < n * blocks; ++i) x[i] = static_cast<float>(i % 7);
  emu::launch<reduce_kernel>(dim3(blocks), dim3(n), n * sizeof(float), false, x.data(), out.data(), barriers);
  float total = 0;
  for (float v : out) total += v;
  if (per_block) *per_block = out;
  return total;
}

void case_reduction() {
  float expected = 0;
  for (int i = 0; i < 128 * 5; ++i) expected += static_cast<float>(i % 7);
  EXPECT(run_reduce(true) == expected, run_reduce(true) << " vs " << expected);
}

// The same reduction without its barriers: the answer must come out wrong (printed for the test).
void case_missing_barrier() {
  std::vector<float> per_block;
  const float got = run_reduce(false, &per_block);
  std::printf("sum %g\n", got);
}

// ---- warps --------------------------------------------------------------------------------
__global__ void shuffle_kernel(int* out) {
  const int lane = threadIdx.x % 32;
  const int v = static_cast<int>(threadIdx.x);
  int* o = out + 12 * threadIdx.x;
  o[0] = __shfl_sync(0xffffffffu, v, 5);
  o[1] = __shfl_sync(0xffffffffu, v, 5 + 32);  // the source lane is taken modulo width
  o[2] = __shfl_sync(0xffffffffu, v, 3, 8);
  o[3] = __shfl_up_sync(0xffffffffu, v, 2, 16);
  o[4] = __shfl_down_sync(0xffffffffu, v, 1);
  o[5] = __shfl_down_sync(0xffffffffu, v, 3, 8);
  o[6] = __shfl_xor_sync(0xffffffffu, v, 1);
  o[7] = __shfl_xor_sync(0xffffffffu, v, 16, 16);  // a later segment: own value
  int sum = v;
  for (int m = 16; m > 0; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
  o[8] = sum;
  const double d = 1e300 * (lane + 1);
  o[9] = __shfl_sync(0xffffffffu, d, 31 - lane) == 1e300 * (32 - lane);
  const long long big = (1ll << 40) + lane;
  o[10] = __shfl_down_sync(0xffffffffu, big, 4) == (lane < 28 ? big + 4 : big);
  const __half h = __float2half(static_cast<float>(lane) * 0.5f);
  o[11] = __half2float(__shfl_sync(0xffffffffu, h, 0, 4)) == static_cast<float>(lane / 4 * 4) * 0.5f;
}

void case_shuffles() {
  const int n = 64;
  std::vector<int> out(12 * n, -1);
  emu::launch<shuffle_kernel>(dim3(1), dim3(n), 0, false, out.data());
  for (int t = 0; t < n; ++t) {
    const int lane = t % 32, base = t - lane;
    const int* o = &out[12 * t];
    EXPECT(o[0] == base + 5 && o[1] == base + 5, "thread " << t << ": " << o[0] << " " << o[1]);
    EXPECT(o[2] == t / 8 * 8 + 3, "thread " << t << ": " << o[2]);
    EXPECT(o[3] == (lane % 16 < 2 ? t : t - 2), "thread " << t << ": " << o[3]);
    EXPECT(o[4] == (lane == 31 ? t : t + 1), "thread " << t << ": " << o[4]);
    EXPECT(o[5] == (lane % 8 >= 5 ? t : t + 3), "thread " << t << ": " << o[5]);
    EXPECT(o[6] == (t ^ 1), "thread " << t << ": " << o[6]);
    EXPECT(o[7] == (lane < 16 ? t : t - 16), "thread " << t << ": " << o[7]);
    EXPECT(o[8] == 32 * base + 496, "thread " << t << ": " << o[8]);
    EXPECT(o[9] == 1 && o[10] == 1 && o[11] == 1, "thread " << t << ": " << o[9] << o[10] << o[11]);
  }
}

__global__ void votes_kernel(unsigned* out) {
  const unsigned lane = threadIdx.x % 32;
  unsigned* o = out + 5 * threadIdx.x;
  o[0] = __ballot_sync(0xffffffffu, lane % 3 == 0);
  o[1] = __any_sync(0xffffffffu, lane == 30);
  o[2] = __all_sync(0xffffffffu, lane < 31);
  o[3] = __all_sync(0xffffffffu, lane < 32);
  // Two halves of the warp vote separately.
  o[4] = lane < 16 ? __ballot_sync(0x0000ffffu, lane & 1) : __ballot_sync(0xffff0000u, !(lane & 1));
}

void case_votes() {
  std::vector<unsigned> out(5 * 32, 7);
  emu::launch<votes_kernel>(dim3(1), dim3(32), 0, false, out.data());
  unsigned every_third = 0;
  for (int l = 0; l < 32; l += 3) every_third |= 1u << l;
  for (int l = 0; l < 32; ++l) {
    const unsigned* o = &out[5 * l];
    EXPECT(o[0] == every_third && o[1] == 1 && o[2] == 0 && o[3] == 1, "lane " << l);
    EXPECT(o[4] == (l < 16 ? 0x0000aaaau : 0x55550000u), "lane " << l << ": " << std::hex << o[4]);
  }
}

// A warp exchanges values through shared memory, ordered by __syncwarp; the block has a partial
// second warp of 8 lanes, which uses the mask of its 8 lanes.
__global__ void syncwarp_kernel(int* out) {
  __shared__ int s[40];
  const unsigned t = threadIdx.x, lane = t % 32, warp = t / 32;
  const unsigned mask = warp == 0 ? 0xffffffffu : 0xffu;
  const unsigned lanes = warp == 0 ? 32 : 8;
  s[t] = static_cast<int>(t * t);
  __syncwarp(mask);
  out[t] = s[warp * 32 + (lane + 1) % lanes];
  out[40 + t] = __shfl_sync(mask, static_cast<int>(t), 0);
}

void case_syncwarp_partial_warp() {
  std::vector<int> out(80, -1);
  emu::launch<syncwarp_kernel>(dim3(1), dim3(40), 0, false, out.data());
  for (int t = 0; t < 40; ++t) {
    const int warp = t / 32, lanes = warp == 0 ? 32 : 8, src = warp * 32 + (t % 32 + 1) % lanes;
    EXPECT(out[t] == src * src, "thread " << t << ": " << out[t]);
    EXPECT(out[40 + t] == warp * 32, "thread " << t << ": " << out[40 + t]);
  }
}

// ---- cooperative groups -------------------------------------------------------------------
__global__ void groups_kernel(int* out) {
  cg::thread_block block = cg::this_thread_block();
  cg::thread_block_tile<16> tile = cg::tiled_partition<16>(block);
  int* o = out + 6 * block.thread_rank();
  o[0] = static_cast<int>(block.thread_rank());
  o[1] = static_cast<int>(tile.thread_rank());
  o[2] = static_cast<int>(tile.meta_group_rank());
  o[3] = tile.shfl(static_cast<int>(block.thread_rank()), 15);
  o[4] = static_cast<int>(tile.ballot(tile.thread_rank() < 4));
  int sum = static_cast<int>(tile.thread_rank());
  for (unsigned m = 8; m > 0; m /= 2) sum += tile.shfl_xor(sum, m);
  tile.sync();
  block.sync();
  o[5] = sum;
}

void case_cooperative_groups() {
  std::vector<int> out(6 * 64, -1);
  emu::launch<groups_kernel>(dim3(1), dim3(64), 0, false, out.data());
  for (int t = 0; t < 64; ++t) {
    const int* o = &out[6 * t];
    EXPECT(o[0] == t && o[1] == t % 16 && o[2] == t / 16, "thread " << t);
    EXPECT(o[3] == t / 16 * 16 + 15 && o[4] == 0xf && o[5] == 120, "thread " << t << ": " << o[3] << " " << o[4] << " "
                                                                           << o[5]);
  }
}

// Every block adds up every block's value of the round before, 30 rounds, through grid.sync().
__global__ void grid_sync_kernel(long long* values, long long* sums, int rounds, int* valid) {
  cg::grid_group grid = cg::this_grid();
  const unsigned b = blockIdx.x, nb = gridDim.x;
  if (threadIdx.x == 0) valid[b] = grid.is_valid() && grid.num_blocks() == nb;
  for (int r = 0; r < rounds; ++r) {
    if (threadIdx.x == 0) values[(r % 2) * nb + b] = static_cast<long long>(b + 1) * (r + 1);
    grid.sync();
    if (threadIdx.x == 0) {
      long long s = 0;
      for (unsigned k = 0; k < nb; ++k) s += values[(r % 2) * nb + k];
      sums[r * nb + b] = s;
    }
    grid.sync();
  }
}

void case_grid_sync() {
  const int nb = 12, rounds = 30;
  std::vector<long long> values(2 * nb, 0), sums(rounds * nb, -1);
  std::vector<int> valid(nb, 0);
  emu::launch<grid_sync_kernel>(dim3(nb), dim3(64), 0, true, values.data(), sums.data(), rounds, valid.data());
  for (int r = 0; r < rounds; ++r)
    for (int b = 0; b < nb; ++b) EXPECT(sums[r * nb + b] == (r + 1) * nb * (nb + 1) / 2, "round " << r << " block " << b);
  for (int b = 0; b < nb; ++b) EXPECT(valid[b] == 1, "block " << b);
}

// Blocks hand a token along a chain through per-block flags, spinning with __nanosleep.
__global__ void flags_kernel(int* flags, int* order, int* counter) {
  const unsigned b = blockIdx.x;
  if (threadIdx.x == 0) {
    if (b > 0) {
      while (__atomic_load_n(&flags[b - 1], __ATOMIC_ACQUIRE) == 0) __nanosleep(100);
    }
    order[b] = atomicAdd(counter, 1);
    __threadfence();
    __atomic_store_n(&flags[b], 1, __ATOMIC_RELEASE);
  }
  __syncthreads();
}

void case_flags() {
  const int nb = 10;
  std::vector<int> flags(nb, 0), order(nb, -1);
  int counter = 0;
  emu::launch<flags_kernel>(dim3(nb), dim3(32), 0, true, flags.data(), order.data(), &counter);
  for (int b = 0; b < nb; ++b) EXPECT(order[b] == b, "block " << b << " came " << order[b]);
}

__global__ void atomics_kernel(int* i, float* f, double* d, unsigned* mx) {
  atomicAdd(i, 1);
  atomicAdd(f, 1.0f);
  atomicAdd(d, 0.5);
  atomicMax(mx, blockIdx.x * blockDim.x + threadIdx.x);
}

void case_atomics() {
  int i = 0;
  float f = 0;
  double d = 0;
  unsigned mx = 0;
  emu::launch<atomics_kernel>(dim3(37), dim3(128), 0, false, &i, &f, &d, &mx);
  EXPECT(i == 37 * 128 && f == 37.0f * 128 && d == 37 * 64.0 && mx == 37 * 128 - 1, i << " " << f << " " << d << " " << mx);
}

// ---- half and bfloat16 ---------------------------------------------------------------------
void case_half_bfloat16() {
  struct H {
    float f;
    unsigned short half;
  };
  const H halves[] = {{1.0f, 0x3c00},        {-2.0f, 0xc000},        {65504.0f, 0x7bff},      {65519.0f, 0x7bff},
                      {65520.0f, 0x7c00},    {1e9f, 0x7c00},         {5.9604645e-8f, 0x0001},  // 2^-24
                      {2.9802322e-8f, 0x0000},                                                 // 2^-25: tie, to even
                      {4.4703484e-8f, 0x0001},                                                 // 1.5 * 2^-25
                      {6.1035156e-5f, 0x0400},                                                 // 2^-14
                      {0.1f, 0x2e66},        {1.0009766f, 0x3c01},   {1.00048828125f, 0x3c00}};  // tie to even
  for (const H& h : halves) {
    EXPECT(__half_as_ushort(__float2half(h.f)) == h.half, h.f << " -> " << std::hex << __half_as_ushort(__float2half(h.f)));
    if ((h.half & 0x7c00) != 0x7c00) {
      EXPECT(__half2float(__ushort_as_half(h.half)) == __half2float(__float2half(h.f)), h.f);
    }
  }
  EXPECT(__half2float(__ushort_as_half(0x0001)) == 5.9604645e-8f, "smallest subnormal");
  EXPECT(__half2float(__ushort_as_half(0x7bff)) == 65504.0f, "largest");
  const float nan = std::nanf("");
  EXPECT(__half_as_ushort(__float2half(nan)) == 0x7fff && __bfloat16_as_ushort(__float2bfloat16(nan)) == 0x7fff, "NaN");
  struct B {
    float f;
    unsigned short bf;
  };
  const B bfs[] = {{1.0f, 0x3f80}, {1.00390625f, 0x3f80}, {1.01171875f, 0x3f82}, {-3.0f, 0xc040}, {1e-40f, 0x0001}};
  for (const B& b : bfs) {
    EXPECT(__bfloat16_as_ushort(__float2bfloat16(b.f)) == b.bf, b.f);
  }
  EXPECT(__bfloat162float(__ushort_as_bfloat16(0x3f82)) == 1.015625f, "bf16 to float");
}

// ---- thread order ------------------------------------------------------------------------
__global__ void order_kernel(int* log, int* next) {
  log[atomicAdd(next, 1)] = static_cast<int>(threadIdx.x);
  __syncthreads();
  log[atomicAdd(next, 1)] = static_cast<int>(threadIdx.x);
}

// Prints the order in which the threads passed each point (for the test to compare seeds).
// ---- wmma ----------------------------------------------------------------------------------
// Two warps, each a 16 x 16 tile of A B^T (A 32 x 32, B 16 x 32 row-major) over two k tiles, in
// half and in bfloat16; C is stored by the lanes' shares and read back by lane 0 after a __syncwarp.
template <typename T>
__global__ void wmma_kernel(const T* a, const T* b, float* c, float* check, bool sync) {
  namespace wmma = nvcuda::wmma;
  const int warp = threadIdx.x / 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  for (int k0 = 0; k0 < 32; k0 += 16) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
    wmma::load_matrix_sync(fa, a + warp * 16 * 32 + k0, 32);
    wmma::load_matrix_sync(fb, b + k0, 32);
    wmma::mma_sync(acc, fa, fb, acc);
  }
  float* tile = c + warp * 16 * 16;
  wmma::store_matrix_sync(tile, acc, 16, wmma::mem_row_major);
  if (sync) __syncwarp();
  if (threadIdx.x % 32 == 0) {  // lane 0 reads the whole tile, the other lanes' shares too
    float sum = 0;
    for (int e = 0; e < 256; ++e) sum += tile[e];
    check[warp] = sum;
  }
}

template <typename T, typename From>
void wmma_case(From from) {
  alignas(32) static T a[32 * 32], b[16 * 32];
  alignas(32) static float c[2 * 256];
  float check[2] = {0, 0};
  std::vector<float> fa(32 * 32), fb(16 * 32);
  for (int i = 0; i < 32 * 32; ++i) fa[i] = static_cast<float>((i * 7) % 11 - 5) / 4;  // exact in both types
  for (int i = 0; i < 16 * 32; ++i) fb[i] = static_cast<float>((i * 5) % 9 - 4) / 2;
  for (int i = 0; i < 32 * 32; ++i) a[i] = from(fa[i]);
  for (int i = 0; i < 16 * 32; ++i) b[i] = from(fb[i]);
  emu::launch<wmma_kernel<T>>(dim3(1), dim3(64), 0, false, a, b, c, check, true);
  for (int w = 0; w < 2; ++w) {
    float total = 0;
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j) {
        float e = 1.0f;
        for (int k = 0; k < 32; ++k) e += fa[(w * 16 + i) * 32 + k] * fb[j * 32 + k];
        EXPECT(c[w * 256 + i * 16 + j] == e, "warp " << w << " (" << i << "," << j << "): " << c[w * 256 + i * 16 + j]
                                                       << " != " << e);
        total += e;
      }
    EXPECT(check[w] == total, "lane 0 read " << check[w] << ", expected " << total);
  }
}

void case_wmma() {
  wmma_case<__half>([](float f) { return __float2half(f); });
  wmma_case<__nv_bfloat16>([](float f) { return __float2bfloat16(f); });
}

// Without the __syncwarp after the store, lane 0 reads the other lanes' shares before some of them
// wrote them (in a shuffled thread order): a wrong sum, as on a GPU.
void case_wmma_missing_syncwarp() {
  alignas(32) static __half a[32 * 32], b[16 * 32];
  alignas(32) static float c[2 * 256];
  for (auto& v : a) v = __float2half(1.0f);
  for (auto& v : b) v = __float2half(1.0f);
  bool wrong = false;
  for (unsigned long long seed = 1; seed <= 8 && !wrong; ++seed) {
    emu::set_schedule_seed(seed);
    std::fill(std::begin(c), std::end(c), 0.0f);
    float check[2] = {0, 0};
    emu::launch<wmma_kernel<__half>>(dim3(1), dim3(64), 0, false, a, b, c, check, false);
    wrong = check[0] != 256 * 33.0f || check[1] != 256 * 33.0f;
  }
  EXPECT(wrong, "a missing __syncwarp after store_matrix_sync went unnoticed over 8 thread orders");
}

__global__ void wmma_misaligned_kernel(const __half* a) {
  nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __half, nvcuda::wmma::row_major> fa;
  nvcuda::wmma::load_matrix_sync(fa, a + 1, 16);
}
void case_err_wmma_misaligned() {
  alignas(32) static __half a[17 * 16];
  emu::launch<wmma_misaligned_kernel>(dim3(1), dim3(32), 0, false, a);
}

void case_thread_order() {
  std::vector<int> log(128, -1);
  int next = 0;
  emu::launch<order_kernel>(dim3(1), dim3(64), 0, false, log.data(), &next);
  for (int v : log) std::printf("%d ", v);
  std::printf("\n");
}

// ---- failure modes: each must make the launch fail with a message --------------------------
__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x >= 48) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}
void case_err_divergent_barrier() {
  std::vector<int> out(64);
  emu::launch<divergent_barrier_kernel>(dim3(2), dim3(64), 0, false, out.data());
}

__global__ void different_barriers_kernel(int* out) {
  if (threadIdx.x % 2) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}
void case_err_different_barriers() {
  std::vector<int> out(64);
  emu::launch<different_barriers_kernel>(dim3(1), dim3(64), 0, false, out.data());
}

__global__ void shfl_exited_source_kernel(int* out) {
  if (threadIdx.x % 32 == 31) return;
  out[threadIdx.x] = __shfl_sync(0x7fffffffu, static_cast<int>(threadIdx.x), 31);
}
void case_err_shfl_exited_source() {
  std::vector<int> out(32);
  emu::launch<shfl_exited_source_kernel>(dim3(1), dim3(32), 0, false, out.data());
}

__global__ void shfl_exited_mask_kernel(int* out) {
  if (threadIdx.x == 7) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
}
void case_err_shfl_exited_in_mask() {
  std::vector<int> out(32);
  emu::launch<shfl_exited_mask_kernel>(dim3(1), dim3(32), 0, false, out.data());
}

__global__ void shfl_absent_lane_kernel(int* out) {
  out[threadIdx.x] = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x), 0);  // only 20 lanes exist
}
void case_err_shfl_absent_lane() {
  std::vector<int> out(20);
  emu::launch<shfl_absent_lane_kernel>(dim3(1), dim3(20), 0, false, out.data());
}

__global__ void shfl_outside_mask_kernel(int* out) {
  if (threadIdx.x < 16) {
    out[threadIdx.x] = __shfl_sync(0x0000ffffu, static_cast<int>(threadIdx.x), 3, 32);
  } else {
    out[threadIdx.x] = __shfl_sync(0xffff0000u, static_cast<int>(threadIdx.x), 3, 32);  // lane 3 is not in the mask
  }
}
void case_err_shfl_outside_mask() {
  std::vector<int> out(32);
  emu::launch<shfl_outside_mask_kernel>(dim3(1), dim3(32), 0, false, out.data());
}

__global__ void mixed_collectives_kernel(int* out) {
  if (threadIdx.x < 8) {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
  } else {
    out[threadIdx.x] = static_cast<int>(__ballot_sync(0xffffffffu, 1));
  }
}
void case_err_mixed_collectives() {
  std::vector<int> out(32);
  emu::launch<mixed_collectives_kernel>(dim3(1), dim3(32), 0, false, out.data());
}

__global__ void deadlock_kernel(int* out) {
  if (threadIdx.x == 0) {
    __syncthreads();
  } else {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
  }
}
void case_err_deadlock() {
  std::vector<int> out(32);
  emu::launch<deadlock_kernel>(dim3(1), dim3(32), 0, false, out.data());
}

__global__ void grid_sync_kernel_plain(int* out) {
  cg::this_grid().sync();
  out[threadIdx.x] = 1;
}
void case_err_grid_sync_not_cooperative() {
  std::vector<int> out(32);
  emu::launch<grid_sync_kernel_plain>(dim3(2), dim3(32), 0, false, out.data());
}

void case_err_cooperative_too_large() {
  std::vector<int> out(32);
  emu::set_sm_count(2);
  const int per_sm = emu::max_active_blocks_per_sm(1024, 0);  // 2 blocks of 1024 threads an SM
  std::printf("per_sm %d\n", per_sm);
  emu::launch<grid_sync_kernel_plain>(dim3(2 * per_sm + 1), dim3(1024), 0, true, out.data());
}

__global__ void spin_forever_kernel(int* flag) {
  while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) == 0) __nanosleep(1000);
}
void case_err_timeout() {
  int flag = 0;
  emu::set_timeout(1.0);
  emu::launch<spin_forever_kernel>(dim3(1), dim3(32), 0, false, &flag);
}

__global__ void trap_kernel(int* out) {
  if (threadIdx.x == 5 && blockIdx.x == 1) __trap();
  out[threadIdx.x] = 1;
}
void case_err_trap() {
  std::vector<int> out(32);
  emu::launch<trap_kernel>(dim3(3), dim3(32), 0, false, out.data());
}

void case_err_bad_config() {
  std::vector<int> out(32);
  emu::launch<trap_kernel>(dim3(1), dim3(2048), 0, false, out.data());
}

__global__ void recurse_kernel(int* out, int depth);
__device__ __attribute__((noinline)) int deep(int depth) {
  volatile char pad[1024];
  pad[0] = static_cast<char>(depth);
  return depth == 0 ? pad[0] : deep(depth - 1) + pad[0];
}
__global__ void recurse_kernel(int* out, int depth) { out[threadIdx.x] = deep(depth); }
// Aborts the process (the neighbouring stacks are corrupt), with a message.
void case_abort_stack_overflow() {
  std::vector<int> out(4);
  emu::launch<recurse_kernel>(dim3(1), dim3(4), 0, false, out.data(), 100000);
}

// Reads one element past the end of a heap array: AddressSanitizer must report it.
__global__ void out_of_bounds_kernel(const int* in, int* out, int n) {
  out[threadIdx.x] = in[threadIdx.x + (threadIdx.x == 31 ? n - 31 : 0)];
}
void case_asan_out_of_bounds() {
  const int n = 32;
  std::vector<int> in(n, 1), out(n);
  emu::launch<out_of_bounds_kernel>(dim3(1), dim3(32), 0, false, in.data(), out.data(), n);
  std::printf("read %d\n", out[31]);
}

// A signed overflow in a kernel: UBSan must report it.
__global__ void overflow_kernel(int* out, int big) { out[threadIdx.x] = big + static_cast<int>(threadIdx.x); }
void case_ubsan_overflow() {
  std::vector<int> out(32);
  emu::launch<overflow_kernel>(dim3(1), dim3(32), 0, false, out.data(), 2147483647);
  std::printf("wrote %d\n", out[1]);
}

const std::map<std::string, std::function<void()>>& cases() {
  static const std::map<std::string, std::function<void()>> all = {
      {"indices", case_indices},
      {"static_shared", case_static_shared},
      {"dynamic_shared", case_dynamic_shared},
      {"syncthreads_votes", case_syncthreads_votes},
      {"reduction", case_reduction},
      {"missing_barrier", case_missing_barrier},
      {"shuffles", case_shuffles},
      {"votes", case_votes},
      {"syncwarp_partial_warp", case_syncwarp_partial_warp},
      {"cooperative_groups", case_cooperative_groups},
      {"grid_sync", case_grid_sync},
      {"flags", case_flags},
      {"atomics", case_atomics},
      {"half_bfloat16", case_half_bfloat16},
      {"thread_order", case_thread_order},
      {"wmma", case_wmma},
      {"wmma_missing_syncwarp", case_wmma_missing_syncwarp},
      {"err_wmma_misaligned", case_err_wmma_misaligned},
      {"err_divergent_barrier", case_err_divergent_barrier},
      {"err_different_barriers", case_err_different_barriers},
      {"err_shfl_exited_source", case_err_shfl_exited_source},
      {"err_shfl_exited_in_mask", case_err_shfl_exited_in_mask},
      {"err_shfl_absent_lane", case_err_shfl_absent_lane},
      {"err_shfl_outside_mask", case_err_shfl_outside_mask},
      {"err_mixed_collectives", case_err_mixed_collectives},
      {"err_deadlock", case_err_deadlock},
      {"err_grid_sync_not_cooperative", case_err_grid_sync_not_cooperative},
      {"err_cooperative_too_large", case_err_cooperative_too_large},
      {"err_timeout", case_err_timeout},
      {"err_trap", case_err_trap},
      {"err_bad_config", case_err_bad_config},
      {"abort_stack_overflow", case_abort_stack_overflow},
      {"asan_out_of_bounds", case_asan_out_of_bounds},
      {"ubsan_overflow", case_ubsan_overflow},
  };
  return all;
}

int convert() {
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    const unsigned bits = static_cast<unsigned>(std::stoul(line, nullptr, 16));
    const float f = __uint_as_float(bits);
    const __half h = __float2half(f);
    const __nv_bfloat16 b = __float2bfloat16(f);
    const float hb = __half2float(h), bb = __bfloat162float(b);
    std::printf("%08x %04x %04x %08x %08x\n", bits, __half_as_ushort(h), __bfloat16_as_ushort(b), __float_as_uint(hb),
                __float_as_uint(bb));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: selftest CASE [SEED] | --list | --convert\n");
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--list") {
    for (const auto& c : cases()) std::printf("%s\n", c.first.c_str());
    return 0;
  }
  if (name == "--convert") return convert();
  if (argc > 2) emu::set_schedule_seed(std::strtoull(argv[2], nullptr, 10));
  const auto it = cases().find(name);
  if (it == cases().end()) {
    std::fprintf(stderr, "unknown case %s\n", name.c_str());
    return 2;
  }
  try {
    it->second();
  } catch (const std::exception& e) {
    std::printf("ERROR: %s\n", e.what());
    return 0;
  }
  if (!g_fail.empty()) {
    std::printf("FAIL: %s\n", g_fail.c_str());
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
