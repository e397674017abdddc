// fusedrnn's CUDA emulation layer: runs CUDA kernel source on the CPU with CUDA's semantics, so that
// the kernels nvcc compiles are also executed (and tested) on machines with no GPU.
//
// Model: every block of a launch runs on one OS thread, every CUDA thread of the block as a fiber
// (a user-level context with its own stack) on it. Fibers run until they reach a synchronisation
// point (__syncthreads, a warp collective, grid.sync(), __nanosleep) or exit; when every fiber of the
// block is waiting, the scheduler resolves what can complete and resumes those fibers (in thread
// order, or in an order shuffled from a seed). So:
//   - static __shared__ variables are thread_local (one copy per block); dynamic shared memory is a
//     buffer per block, filled with 0xFF bytes (NaN in every floating type) at the start of a block;
//   - warps are 32 lanes of consecutive linear thread ids; a warp collective completes when every lane
//     its mask names has reached the same collective with the same mask;
//   - a cooperative launch runs every block at once, each on its own OS thread, and grid.sync() is a
//     barrier between them; other launches spread their blocks over a few worker threads.
// Failures are reported, not hung on or guessed at: a barrier that a thread of its group exited
// without reaching, a shuffle that names an exited or absent lane, mismatched collectives, a deadlock
// or a launch that outlives FUSEDRNN_EMU_TIMEOUT seconds raise std::runtime_error from the launch,
// naming the kernel, the block and the thread. It cannot find weak-memory-ordering bugs, timing,
// bank conflicts or real occupancy.
//
// This header has no dependency on torch: csrc/emu/compat.h puts it under fusedrnn's kernels, and
// tests/emu/selftest.cpp tests it on its own (also under AddressSanitizer and UBSan).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- CUDA's built-in types and variables -----------------------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
// Set by the scheduler for the fiber it resumes (threadIdx) and for the block it runs (the rest).
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __shared__ static thread_local
#define __constant__
#define __managed__
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

namespace fusedrnn {
namespace emu {

// ---- configuration -------------------------------------------------------------------------
// The emulated device. sm_count defaults to 132 (H100/H200) or FUSEDRNN_EMU_SMS; the other limits
// are sm_90's. Cooperative launches and the occupancy query use them.
struct DeviceProps {
  int sm_count;
  int max_threads_per_block;
  int max_threads_per_sm;
  int max_blocks_per_sm;
  std::size_t smem_per_block_optin;  // dynamic shared memory a block may ask for
  std::size_t smem_per_sm;
};
DeviceProps device_props();
void set_sm_count(int n);  // 0: back to the default
// Thread order at every barrier: 0 in thread order, else shuffled from this seed
// (FUSEDRNN_EMU_SEED sets the initial value).
void set_schedule_seed(std::uint64_t seed);
std::uint64_t schedule_seed();
// Worker threads for non-cooperative launches (FUSEDRNN_EMU_WORKERS, default: the CPU count).
void set_workers(int n);
// Seconds after which a launch that has not finished is aborted (FUSEDRNN_EMU_TIMEOUT, default 120).
void set_timeout(double seconds);

struct Stats {
  std::uint64_t launches, cooperative_launches, blocks, threads, block_barriers, warp_collectives,
      grid_barriers;
  std::uint64_t cooperative_smem_bytes;  // the dynamic shared memory of every cooperative launch, summed
  std::uint64_t last_cooperative_smem;   // and of the last one
};
Stats stats();

// Blocks of `threads` threads and `smem` bytes of dynamic shared memory that fit on one SM at once.
int max_active_blocks_per_sm(int threads, std::size_t smem);

// ---- launching -----------------------------------------------------------------------------
struct LaunchConfig {
  const char* kernel;  // name, for messages
  dim3 grid, block;
  std::size_t smem;
  bool cooperative;
};
// Runs body(arg) as every thread of every block; returns when all have exited. Throws
// std::runtime_error on a bad configuration or a failure inside the kernel.
void run(const LaunchConfig& config, void (*body)(void*), void* arg);

// The name of a kernel from its address as a template argument.
std::string kernel_name_from(const char* pretty_function);
template <auto Kernel>
const char* kernel_name() {
  static const std::string name = kernel_name_from(__PRETTY_FUNCTION__);
  return name.c_str();
}

template <typename Body>
void invoke_body(void* arg) {
  (*static_cast<Body*>(arg))();
}

// Launches Kernel(args...) over grid x block threads: each thread gets its own copy of the
// parameters, converted to the kernel's parameter types as a real launch does.
template <auto Kernel, typename... P, typename... A>
void launch_kernel(void (*)(P...), dim3 grid, dim3 block, std::size_t smem, bool cooperative, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "wrong number of kernel arguments");
  const std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  auto body = [&params] { std::apply([](const auto&... p) { Kernel(p...); }, params); };
  run(LaunchConfig{kernel_name<Kernel>(), grid, block, smem, cooperative}, &invoke_body<decltype(body)>, &body);
}
template <auto Kernel, typename... A>
void launch(dim3 grid, dim3 block, std::size_t smem, bool cooperative, A&&... args) {
  launch_kernel<Kernel>(Kernel, grid, block, smem, cooperative, std::forward<A>(args)...);
}

// ---- inside a kernel -----------------------------------------------------------------------
// Synchronisation points take the caller's source position for messages.
#define FUSEDRNN_EMU_WHERE const char *file = __builtin_FILE(), int line = __builtin_LINE()
enum class BlockReduce { kNone, kCount, kAnd, kOr };
int block_barrier(BlockReduce reduce, int predicate, const char* what, const char* file, int line);
enum class WarpOp { kSync, kShflIdx, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll };
// One lane's part in a warp collective: for shuffles `value` is the lane's bits and the result the
// bits it reads; for votes `value` is the predicate and the result the vote.
std::uint64_t warp_collective(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width, const char* file,
                              int line);
void grid_barrier(const char* file, int line);
void yield_thread();  // __nanosleep: lets every other thread and block run first
unsigned char* dynamic_smem();
[[noreturn]] void trap(const char* what, const char* file, int line);
unsigned lane_id();

template <typename T>
std::uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffles move values of up to 8 bytes");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <typename T>
T from_bits(std::uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

}  // namespace emu
}  // namespace fusedrnn

// ---- CUDA's device functions ----------------------------------------------------------------
inline void __syncthreads(FUSEDRNN_EMU_WHERE) {
  fusedrnn::emu::block_barrier(fusedrnn::emu::BlockReduce::kNone, 0, "__syncthreads", file, line);
}
inline int __syncthreads_count(int predicate, FUSEDRNN_EMU_WHERE) {
  return fusedrnn::emu::block_barrier(fusedrnn::emu::BlockReduce::kCount, predicate, "__syncthreads_count", file,
                                      line);
}
inline int __syncthreads_and(int predicate, FUSEDRNN_EMU_WHERE) {
  return fusedrnn::emu::block_barrier(fusedrnn::emu::BlockReduce::kAnd, predicate, "__syncthreads_and", file, line);
}
inline int __syncthreads_or(int predicate, FUSEDRNN_EMU_WHERE) {
  return fusedrnn::emu::block_barrier(fusedrnn::emu::BlockReduce::kOr, predicate, "__syncthreads_or", file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, FUSEDRNN_EMU_WHERE) {
  fusedrnn::emu::warp_collective(fusedrnn::emu::WarpOp::kSync, mask, 0, 0, warpSize, file, line);
}
template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize, FUSEDRNN_EMU_WHERE) {
  using namespace fusedrnn::emu;
  return from_bits<T>(warp_collective(WarpOp::kShflIdx, mask, to_bits(var), src_lane, width, file, line));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, FUSEDRNN_EMU_WHERE) {
  using namespace fusedrnn::emu;
  return from_bits<T>(warp_collective(WarpOp::kShflUp, mask, to_bits(var), static_cast<int>(delta), width, file,
                                      line));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, FUSEDRNN_EMU_WHERE) {
  using namespace fusedrnn::emu;
  return from_bits<T>(warp_collective(WarpOp::kShflDown, mask, to_bits(var), static_cast<int>(delta), width,
                                      file, line));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize, FUSEDRNN_EMU_WHERE) {
  using namespace fusedrnn::emu;
  return from_bits<T>(warp_collective(WarpOp::kShflXor, mask, to_bits(var), lane_mask, width, file, line));
}
inline unsigned __ballot_sync(unsigned mask, int predicate, FUSEDRNN_EMU_WHERE) {
  using namespace fusedrnn::emu;
  return static_cast<unsigned>(warp_collective(WarpOp::kBallot, mask, predicate != 0, 0, warpSize, file, line));
}
inline int __any_sync(unsigned mask, int predicate, FUSEDRNN_EMU_WHERE) {
  using namespace fusedrnn::emu;
  return static_cast<int>(warp_collective(WarpOp::kAny, mask, predicate != 0, 0, warpSize, file, line));
}
inline int __all_sync(unsigned mask, int predicate, FUSEDRNN_EMU_WHERE) {
  using namespace fusedrnn::emu;
  return static_cast<int>(warp_collective(WarpOp::kAll, mask, predicate != 0, 0, warpSize, file, line));
}
inline void __nanosleep(unsigned) { fusedrnn::emu::yield_thread(); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
[[noreturn]] inline void __trap(FUSEDRNN_EMU_WHERE) { fusedrnn::emu::trap("__trap()", file, line); }

template <typename T>
T __ldg(const T* p) {
  return *p;
}

// Atomics: real ones, as blocks run concurrently on several OS threads.
template <typename T>
T atomicAdd(T* address, T val) {
  if constexpr (std::is_floating_point<T>::value) {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    Bits* bits = reinterpret_cast<Bits*>(address);
    Bits old = __atomic_load_n(bits, __ATOMIC_RELAXED), desired;
    do {
      T sum;
      std::memcpy(&sum, &old, sizeof(T));
      sum += val;
      std::memcpy(&desired, &sum, sizeof(T));
    } while (!__atomic_compare_exchange_n(bits, &old, desired, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    T previous;
    std::memcpy(&previous, &old, sizeof(T));
    return previous;
  } else {
    return __atomic_fetch_add(address, val, __ATOMIC_SEQ_CST);
  }
}
template <typename T>
T atomicSub(T* address, T val) {
  return __atomic_fetch_sub(address, val, __ATOMIC_SEQ_CST);
}
template <typename T>
T atomicExch(T* address, T val) {
  return __atomic_exchange_n(address, val, __ATOMIC_SEQ_CST);
}
template <typename T>
T atomicCAS(T* address, T compare, T val) {
  __atomic_compare_exchange_n(address, &compare, val, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;  // the old value, whether or not it was replaced
}
template <typename T>
T atomicMax(T* address, T val) {
  T old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (old < val && !__atomic_compare_exchange_n(address, &old, val, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
T atomicMin(T* address, T val) {
  T old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (old > val && !__atomic_compare_exchange_n(address, &old, val, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
T atomicAnd(T* address, T val) {
  return __atomic_fetch_and(address, val, __ATOMIC_SEQ_CST);
}
template <typename T>
T atomicOr(T* address, T val) {
  return __atomic_fetch_or(address, val, __ATOMIC_SEQ_CST);
}
template <typename T>
T atomicXor(T* address, T val) {
  return __atomic_fetch_xor(address, val, __ATOMIC_SEQ_CST);
}

// Math intrinsics: the fast variants computed exactly (a GPU's may differ in the last bits).
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __tanhf(float x) { return std::tanh(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __int_as_float(int v) { return fusedrnn::emu::from_bits<float>(static_cast<std::uint32_t>(v)); }
inline int __float_as_int(float v) { return static_cast<int>(fusedrnn::emu::to_bits(v)); }
inline float __uint_as_float(unsigned v) { return fusedrnn::emu::from_bits<float>(v); }
inline unsigned __float_as_uint(float v) { return static_cast<unsigned>(fusedrnn::emu::to_bits(v)); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned>(v)); }
inline unsigned __brev(unsigned v) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((v >> i) & 1u) << (31 - i);
  return r;
}

// ---- half and bfloat16 ---------------------------------------------------------------------
// Storage types with CUDA's conversions (round to nearest even, as __float2half / __float2bfloat16).
struct __half {
  unsigned short x;
};
struct __nv_bfloat16 {
  unsigned short x;
};
namespace fusedrnn {
namespace emu {
unsigned short float_to_half_bits(float f);
float half_bits_to_float(unsigned short h);
unsigned short float_to_bfloat16_bits(float f);
float bfloat16_bits_to_float(unsigned short b);
}  // namespace emu
}  // namespace fusedrnn
inline __half __float2half(float f) { return __half{fusedrnn::emu::float_to_half_bits(f)}; }
inline __half __float2half_rn(float f) { return __float2half(f); }
inline float __half2float(__half h) { return fusedrnn::emu::half_bits_to_float(h.x); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16{fusedrnn::emu::float_to_bfloat16_bits(f)}; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return fusedrnn::emu::bfloat16_bits_to_float(b.x); }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
inline __half __ushort_as_half(unsigned short v) { return __half{v}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short v) { return __nv_bfloat16{v}; }

// ---- cooperative groups (the part fusedrnn's kernels use) -----------------------------------
namespace cooperative_groups {

class grid_group {
 public:
  void sync(FUSEDRNN_EMU_WHERE) const { fusedrnn::emu::grid_barrier(file, line); }
  unsigned long long size() const {
    return static_cast<unsigned long long>(gridDim.x) * gridDim.y * gridDim.z * blockDim.x * blockDim.y * blockDim.z;
  }
  unsigned long long thread_rank() const {
    const unsigned long long block = (static_cast<unsigned long long>(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x +
                                     blockIdx.x;
    return block * blockDim.x * blockDim.y * blockDim.z +
           (static_cast<unsigned long long>(threadIdx.z) * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  }
  unsigned long long num_blocks() const {
    return static_cast<unsigned long long>(gridDim.x) * gridDim.y * gridDim.z;
  }
  unsigned long long block_rank() const {
    return (static_cast<unsigned long long>(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  }
  bool is_valid() const;  // launched cooperatively
};
inline grid_group this_grid() { return grid_group(); }

class thread_block {
 public:
  void sync(FUSEDRNN_EMU_WHERE) const {
    fusedrnn::emu::block_barrier(fusedrnn::emu::BlockReduce::kNone, 0, "thread_block::sync", file, line);
  }
  unsigned size() const { return blockDim.x * blockDim.y * blockDim.z; }
  unsigned num_threads() const { return size(); }
  unsigned thread_rank() const { return (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x; }
  uint3 group_index() const { return blockIdx; }
  uint3 thread_index() const { return threadIdx; }
  dim3 group_dim() const { return blockDim; }
};
inline thread_block this_thread_block() { return thread_block(); }

// A tile of N consecutive threads of a warp (N a power of two up to 32).
template <unsigned N>
class thread_block_tile {
  static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "tiles are powers of two of at most 32 threads");

 public:
  unsigned mask() const {
    const unsigned lanes = N == 32 ? 0xffffffffu : ((1u << N) - 1u);
    return lanes << (fusedrnn::emu::lane_id() / N * N);
  }
  void sync(FUSEDRNN_EMU_WHERE) const {
    fusedrnn::emu::warp_collective(fusedrnn::emu::WarpOp::kSync, mask(), 0, 0, warpSize, file, line);
  }
  static constexpr unsigned size() { return N; }
  static constexpr unsigned num_threads() { return N; }
  unsigned thread_rank() const { return fusedrnn::emu::lane_id() % N; }
  unsigned meta_group_rank() const {
    return (threadIdx.z * blockDim.y * blockDim.x + threadIdx.y * blockDim.x + threadIdx.x) / N;
  }
  unsigned meta_group_size() const { return (blockDim.x * blockDim.y * blockDim.z + N - 1) / N; }
  template <typename T>
  T shfl(T var, int src_rank, FUSEDRNN_EMU_WHERE) const {
    return __shfl_sync(mask(), var, src_rank, N, file, line);
  }
  template <typename T>
  T shfl_down(T var, unsigned delta, FUSEDRNN_EMU_WHERE) const {
    return __shfl_down_sync(mask(), var, delta, N, file, line);
  }
  template <typename T>
  T shfl_up(T var, unsigned delta, FUSEDRNN_EMU_WHERE) const {
    return __shfl_up_sync(mask(), var, delta, N, file, line);
  }
  template <typename T>
  T shfl_xor(T var, unsigned lane_mask, FUSEDRNN_EMU_WHERE) const {
    return __shfl_xor_sync(mask(), var, static_cast<int>(lane_mask), N, file, line);
  }
  unsigned ballot(int predicate, FUSEDRNN_EMU_WHERE) const {
    // Bits of the tile's own lanes, as cooperative groups return them.
    return __ballot_sync(mask(), predicate, file, line) >> (fusedrnn::emu::lane_id() / N * N);
  }
  int any(int predicate, FUSEDRNN_EMU_WHERE) const { return __any_sync(mask(), predicate, file, line); }
  int all(int predicate, FUSEDRNN_EMU_WHERE) const { return __all_sync(mask(), predicate, file, line); }
};
template <unsigned N, typename Parent>
thread_block_tile<N> tiled_partition(const Parent&) {
  return thread_block_tile<N>();
}

}  // namespace cooperative_groups

// ---- warp matrix multiply-accumulate (nvcuda::wmma, the part fusedrnn's kernels use) ----------
// m16n16k16 tiles of __half or __nv_bfloat16 with float accumulators. CUDA leaves how a fragment's
// elements are spread over the lanes unspecified, so here every lane holds the whole tile; loads,
// mma_sync and stores are warp collectives (all 32 lanes, as CUDA requires), and a store writes each
// lane's share (element i by lane i % 32), so that a lane reading the stored tile before the warp
// synchronises reads stale memory, as it may on a GPU. Misaligned pointers or leading dimensions
// (CUDA: 256-bit aligned pointers, ldm a multiple of 16 bytes) are reported as traps.
namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
inline float to_float(float v) { return v; }
inline float to_float(__half v) { return __half2float(v); }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
void check(const T* p, unsigned ldm, const char* what, const char* file, int line) {
  (void)what;  // the messages are literals: a trap never returns to free a built string
  if (reinterpret_cast<std::uintptr_t>(p) % 32 != 0) fusedrnn::emu::trap("wmma: a pointer not 256-bit aligned", file, line);
  if ((ldm * sizeof(T)) % 16 != 0) fusedrnn::emu::trap("wmma: an ldm not a multiple of 16 bytes", file, line);
}
inline void warp_sync(const char* file, int line) {
  fusedrnn::emu::warp_collective(fusedrnn::emu::WarpOp::kSync, 0xffffffffu, 0, 0, warpSize, file, line);
}
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulation has m16n16k16 tiles only");

 public:
  static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
  static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
  static constexpr int num_elements = rows * cols;  // per lane here; fewer on a GPU
  T x[num_elements];                                // the tile, row by row
};

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, T v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* p, unsigned ldm, FUSEDRNN_EMU_WHERE) {
  static_assert(!std::is_same<Layout, void>::value, "an accumulator's load takes a layout_t");
  detail::check(p, ldm, "wmma::load_matrix_sync", file, line);
  detail::warp_sync(file, line);
  constexpr bool row = std::is_same<Layout, row_major>::value;
  for (int i = 0; i < f.rows; ++i)
    for (int j = 0; j < f.cols; ++j) f.x[i * f.cols + j] = row ? p[i * ldm + j] : p[j * ldm + i];
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm, layout_t layout,
                      FUSEDRNN_EMU_WHERE) {
  detail::check(p, ldm, "wmma::load_matrix_sync", file, line);
  detail::warp_sync(file, line);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) f.x[i * N + j] = layout == mem_row_major ? p[i * ldm + j] : p[j * ldm + i];
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout,
                       FUSEDRNN_EMU_WHERE) {
  detail::check(p, ldm, "wmma::store_matrix_sync", file, line);
  detail::warp_sync(file, line);
  for (int e = static_cast<int>(fusedrnn::emu::lane_id()); e < M * N; e += warpSize) {
    const int i = e / N, j = e % N;
    (layout == mem_row_major ? p[i * ldm + j] : p[j * ldm + i]) = f.x[e];
  }
}

// d = a b + c, in float (the products of 16-bit inputs are exact in float), k ascending.
template <int M, int N, int K, typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c,
              FUSEDRNN_EMU_WHERE) {
  detail::warp_sync(file, line);
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float acc = c.x[i * N + j];
      for (int k = 0; k < K; ++k) acc += detail::to_float(a.x[i * K + k]) * detail::to_float(b.x[k * N + j]);
      out[i * N + j] = acc;
    }
  for (int e = 0; e < M * N; ++e) d.x[e] = out[e];
}

}  // namespace wmma
}  // namespace nvcuda
