// CPU backend of the layer ops: the fused pointwise passes, vectorized with at::vec and parallel
// over the rows of a step. The loop around them is csrc/layer_driver.h.
#include "vec_math.h"  // before cell_math.h, see there
#include "../cell_math.h"
#include "../layer_driver.h"
#include "blas.h"
#include "buffer_pool.h"
#include "loop_stats.h"
#include "packed_gemm.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/cat.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__SSE__) || defined(__x86_64__)
#include <immintrin.h>
#define FUSEDRNN_X86 1
#endif

namespace fusedrnn {
namespace {

template <typename scalar_t>
using Vec = at::vec::Vectorized<scalar_t>;
template <typename scalar_t>
using VecPair = cell::Pair<scalar_t>;

// Set while a tiny layer runs on one thread (see CpuBackend::for_row_blocks): its pointwise
// passes stay on this thread too.
thread_local bool serial_loop = false;

namespace narrow_isa {
#include "pointwise.h"
}  // namespace narrow_isa

#if defined(FUSEDRNN_X86) && defined(CPU_CAPABILITY_AVX2)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
namespace wide_isa {
#include "pointwise.h"
}  // namespace wide_isa
// The float32 forward pass on 16-lane vectors (vec512.h); the other passes stay on wide_isa.
namespace zmm_isa {
#include "vec512.h"
// The cell formulas again, compiled here for AVX-512 so that they inline vec512.h's functions;
// pointwise.h's cell:: calls below resolve to this namespace.
namespace cell {
#include "../cell_formulas.h"
}  // namespace cell
template <typename S>
struct Lanes {
  using type = at::vec::Vectorized<S>;
};
template <>
struct Lanes<float> {
  using type = Z16;
};
template <typename S>
using Vec = typename Lanes<S>::type;
template <typename S>
using VecPair = ZPair<S>;
#include "pointwise.h"
}  // namespace zmm_isa
#pragma GCC pop_options
#endif

// Which build the pointwise passes run (FUSEDRNN_POINTWISE_ISA, read once, at the first pointwise
// pass): where the CPU has AVX-512, by default (or "avx512") the float32 forward pass on 16-lane
// vectors (zmm_isa) and the rest on wide_isa; "avx512-256" every pass on wide_isa; "avx2" the
// AVX2 build (narrow_isa) everywhere.
// zmm_isa against wide_isa, inference on a 2-core Intel Xeon (AVX-512), 2 alternating processes
// each, medians of 100-400 calls: fastai_lstm 14.67 / 15.56 -> 13.95 / 14.52 ms, fastai_gru
// 11.35 / 11.89 -> 10.74 / 11.50, human_numbers_lstm (one layer) 0.52 / 0.53 -> 0.50 / 0.50. Not
// at lstm_h512 (batch 32), whose unit-split pass runs at about 12 clocks an element in both builds,
// hot or cold, bound by its loads rather than its math.
// wide_isa against narrow_isa: the AVX2 build's LSTM forward pass kept its constants on the stack
// (197 stack accesses in its row loop against 36). Inference on a 2-core AMD EPYC Zen 4, 3
// alternating processes each, median of 200 calls: human_numbers_lstm 1.15-1.58 -> 0.97-1.18 ms,
// fastai_lstm 18.3-19.0 -> 17.5-18.3 ms; fastai_gru and agnews_lstm unchanged within the noise.
enum class PointwiseIsa { kAvx2, kAvx512Ymm, kAvx512 };
inline PointwiseIsa pointwise_isa() {
#if defined(FUSEDRNN_X86) && defined(CPU_CAPABILITY_AVX2)
  static const PointwiseIsa isa = [] {
    const char* e = std::getenv("FUSEDRNN_POINTWISE_ISA");
    const std::string v = e ? e : "";
    TORCH_CHECK(v.empty() || v == "avx2" || v == "avx512" || v == "avx512-256",
                "fusedrnn: FUSEDRNN_POINTWISE_ISA must be avx2, avx512 or avx512-256, got '", v, "'");
    TORCH_CHECK(v.empty() || v == "avx2" || cpu_packed::cpu_has_avx512(),
                "fusedrnn: FUSEDRNN_POINTWISE_ISA=", v, ", but this CPU has no AVX-512");
    if (v == "avx2" || !cpu_packed::cpu_has_avx512()) return PointwiseIsa::kAvx2;
    return v == "avx512-256" ? PointwiseIsa::kAvx512Ymm : PointwiseIsa::kAvx512;
  }();
  return isa;
#else
  return PointwiseIsa::kAvx2;
#endif
}
inline bool wide_pointwise() { return pointwise_isa() != PointwiseIsa::kAvx2; }

template <typename scalar_t>
void forward_pointwise(const LayerShape& s, int64_t b, const ForwardStep<scalar_t, scalar_t>& p, int64_t j0 = 0,
                       int64_t j1 = -1) {
#if defined(FUSEDRNN_X86) && defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (pointwise_isa() == PointwiseIsa::kAvx512) return zmm_isa::forward_pointwise<float>(s, b, p, j0, j1);
  }
  if (wide_pointwise()) return wide_isa::forward_pointwise<scalar_t>(s, b, p, j0, j1);
#endif
  narrow_isa::forward_pointwise<scalar_t>(s, b, p, j0, j1);
}

template <typename scalar_t>
void backward_pointwise(const LayerShape& s, int64_t b, const BackwardStep<scalar_t, scalar_t>& p, int64_t j0 = 0,
                        int64_t j1 = -1) {
#if defined(FUSEDRNN_X86) && defined(CPU_CAPABILITY_AVX2)
  if (wide_pointwise()) return wide_isa::backward_pointwise<scalar_t>(s, b, p, j0, j1);
#endif
  narrow_isa::backward_pointwise<scalar_t>(s, b, p, j0, j1);
}

// ---- Row blocks: one thread per block of sequences --------------------------------------------
//
// Rows never mix, so each thread can take a block of the batch through every step on its own,
// with single-threaded products against the whole W_hh (kept in its core's cache), and no
// synchronization between steps: one parallel region per layer call instead of a fork/join (or
// two) per step, and per-thread products of half the rows, which ran faster per flop than one
// two-threaded product of all of them (MKL on 2 cores: rows 16 x 512 x 128 in 40.7 us on one
// thread vs 32 rows in 68.5 us on two; 32 x 256 x 256 60.6 us vs 64 rows 86.3 us).
// Packed batches (rows sorted by length, longest first) are cut where the summed lengths, the
// work, are even. FUSEDRNN_ROW_BLOCKS=0 or 1 (read per call) keeps one block whose products
// thread themselves (the earlier loop, for comparison); FUSEDRNN_ROW_BLOCKS=n asks for
// min(n, batch) blocks whatever the size (tests).
inline int64_t row_block_count(const LayerShape& s) {
  if (at::in_parallel_region()) return 1;
  if (const char* e = std::getenv("FUSEDRNN_ROW_BLOCKS")) {
    const int64_t n = std::atoll(e);
    if (n >= 0 && std::to_string(n) == e) return std::max<int64_t>(1, std::min(n, s.B));
  }
  const int64_t recurrent_flops = 2 * s.N * s.G * s.H * s.Hr;
  if (recurrent_flops < (int64_t(1) << 18)) return 1;  // a few microseconds: not worth a fork
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), s.B));
}

// P + 1 row bounds with about equal work (summed sequence lengths) per block.
inline std::vector<int64_t> row_block_bounds(const LayerShape& s, int64_t P) {
  // length[r] = the number of steps with more than r rows; steps are sorted by batch size in
  // the packed layout, but counting makes no assumption.
  std::vector<int64_t> count(s.B + 1, 0);
  for (int64_t t = 0; t < s.T; ++t) count[std::min(s.batch_sizes[t], s.B)] += 1;
  std::vector<int64_t> length(s.B, 0);
  int64_t above = 0;
  for (int64_t r = s.B - 1; r >= 0; --r) {
    above += count[r + 1];
    length[r] = above;
  }
  std::vector<int64_t> bounds{0};
  int64_t work = 0, r = 0;
  for (int64_t p = 1; p < P; ++p) {
    const int64_t target = s.N * p / P;
    while (r < s.B && work + length[r] / 2 < target) work += length[r++];
    bounds.push_back(std::max(r, bounds.back()));
  }
  bounds.push_back(s.B);
  return bounds;
}

// Tiny layers (a few microseconds of products per step) stay on one thread, BLAS included.
inline bool tiny_layer(const LayerShape& s) { return 2 * s.B * s.G * s.H * s.Hr < (int64_t(1) << 20); }

// Whether this layer call's step products run one per thread (row blocks, a tiny layer, one
// thread, or a caller's parallel region): then they go to the packed kernel, which is
// single-threaded; otherwise (one block of rows on several threads) to the BLAS, threaded.
inline bool single_threaded_products(const LayerShape& s) {
  return row_block_count(s) > 1 || tiny_layer(s) || at::get_num_threads() == 1 || at::in_parallel_region();
}

std::atomic<int64_t> column_split_calls{0};  // CpuBackend::column_split_product (loop_stats)

// ---- The hidden units split between threads ---------------------------------------------------
//
// Row blocks give each thread the whole W_hh to read every step. Once W_hh outgrows a core's L2
// and the blocks are a few rows each, the step product is bound by how fast a core draws W_hh from
// L3 (49 GB/s on one core, 80 on two, on a 4 MB sum, on the Zen 3 this was written on), and a batch
// of one row cannot be cut into blocks at all. So instead each thread takes a slice of the hidden
// units through every step, with those units' rows of W_hh packed for its own products (each
// thread reads 1/P of W_hh a step), computing every row of the step for its units, and the
// threads meet at a barrier after each step (the next step's product reads every unit of h).
//   Forward: hw[:, gate g, slice] = h_prev @ W_hh[gate g, slice]^T, per gate, where h_prev is the
//   output rows of the step before (and hx for rows that start at this step), which no thread
//   writes during the step; the pointwise pass of the slice writes the state, the output and the
//   reserve for its units. Backward: the pointwise pass of the slice writes its units' gate
//   gradients; after the barrier dh[:, slice] = dG @ W_hh[:, slice] reads every gate gradient of
//   the step, and the next step's pointwise pass reads only the slice's own dh and dc: one
//   barrier a step in both passes.
// float32, no projections. The threads are the intra-op pool's (std::threads of our own ran 1.7x
// slower while the pool's threads spun after the input projection). A barrier must only ever wait
// on threads that are running: each thread registers the slices it was given and waits until all
// are taken; a thread given more than one (fewer threads than asked for) makes every thread give up
// before any work, and the caller's row loop runs the layer.
namespace unit_split {

std::atomic<int64_t> forward_calls{0}, backward_calls{0}, step_proj_calls{0};

inline void relax(int64_t spins) {
  if (spins < (1 << 14)) {
#ifdef FUSEDRNN_X86
    _mm_pause();
#endif
  } else {
    std::this_thread::yield();  // more threads than cores: let the others run
  }
}

class SpinBarrier {
 public:
  explicit SpinBarrier(int n) : n_(n) {}
  void wait() {
    const int gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      gen_.store(gen + 1, std::memory_order_release);
      return;
    }
    for (int64_t spins = 0; gen_.load(std::memory_order_acquire) == gen; ++spins) relax(spins);
  }

 private:
  const int n_;
  std::atomic<int> count_{0}, gen_{0};
};

// FUSEDRNN_UNIT_SPLIT, read per layer call: "0" never, "1" whenever the call qualifies at all
// (any size, two threads at least: tests), unset: by size.
inline std::string switch_value() {
  const char* e = std::getenv("FUSEDRNN_UNIT_SPLIT");
  return e ? e : "";
}

// By size, a call is split when W_hh is 512 KB or more (beyond a core's L2 on the smaller
// machines) and the row blocks would be at most kMaxBlockRows rows (the product of a taller block
// does enough work per weight read to hide it); the backward over 8 steps or more (its slices'
// packing, about 1 ns a weight, is paid once a call), the forward whatever its steps: below 8 the
// row loop's products have too few rows for the packed kernel and go to MKL, whose sgemm copies
// all of W_hh every step (gru_h1024_b1 at 4 steps: 2.9-3.4 ms, against 1.8-2.1 at 8 steps split).
// Inference, split vs row loop, 2-core Zen 4, medians of 40 interleaved: LSTM 1024 batch 32, 4
// steps, 22.5 -> 16.2 ms; LSTM 512 batch 16, 4 steps, 4.29 -> 2.83; AWD-LSTM 1152 batch 64, 2
// steps, 27.5 -> 20.9; GRU 512 batch 8, one step, 0.545 -> 0.488. The backward split lost there at
// hidden 512 (LSTM batch 16, 4 steps: 7.9 vs 8.1 ms a training step; GRU batch 8: 3.2 vs 3.5).
constexpr int64_t kMinWeightBytes = int64_t(1) << 19;
constexpr int64_t kMaxBlockRows = 32;

// Slices of units: P + 1 bounds, multiples of 16 (whole SIMD pairs) but the last; none if the call
// does not qualify or H is too short for two slices.
enum class Pass { kForward, kBackward };
inline std::vector<int64_t> slices(const LayerShape& s, Pass pass) {
  const std::string v = switch_value();
  if (v == "0" || s.proj || s.T == 0 || !cpu_packed::available() || at::in_parallel_region()) return {};
  const bool forced = v == "1";
  const int64_t threads = at::get_num_threads();
  if (!forced) {
    const int64_t weight_bytes = s.G * s.H * s.Hr * int64_t(sizeof(float));
    const int64_t block_rows = (s.B + threads - 1) / std::max<int64_t>(1, threads);
    const bool short_call = s.T < 8 && pass == Pass::kBackward;
    if (weight_bytes < kMinWeightBytes || block_rows > kMaxBlockRows || short_call) return {};
  }
  const int64_t align = forced ? 1 : 16;
  const int64_t P = std::min<int64_t>(threads, s.H / align);
  if (P < 2) return {};
  std::vector<int64_t> bounds{0};
  for (int64_t p = 1; p < P; ++p) bounds.push_back(s.H * p / P / align * align);
  bounds.push_back(s.H);
  return bounds;
}

// Runs prepare(p) then body(p, barrier) for every slice p on its own thread of the intra-op pool,
// the bodies only once every slice is prepared and taken; false, with nothing run, when a slice
// could not be prepared or the pool gave a thread more than one slice.
template <typename Prepare, typename Body>
bool run_slices(int P, const Prepare& prepare, const Body& body) {
  std::atomic<int> taken{0};
  std::atomic<bool> ok{true};
  SpinBarrier barrier(P);
  at::parallel_for(0, P, 1, [&](int64_t p0, int64_t p1) {
    // This thread's slice, prepared before it registers: nothing may throw once others wait on it.
    if (p1 - p0 == 1) {
      try {
        prepare(p0);
      } catch (...) {
        ok.store(false);  // the row loop will meet the same problem and report it
      }
    } else {
      ok.store(false);  // fewer threads than slices: the barrier would wait forever
    }
    taken.fetch_add(static_cast<int>(p1 - p0));
    for (int64_t spins = 0; taken.load() < P; ++spins) relax(spins);
    if (ok.load()) body(p0, barrier);
  });
  return ok.load();
}

// The rows a step's product reads as h_prev, in at most two runs: rows [0, n) at `first` and rows
// [n, b) at `second` (rows that start at this step read hx), each Hr apart.
struct PrevRows {
  const float* first;
  int64_t n;
  const float* second;
};
inline PrevRows prev_rows(const LayerShape& s, bool reverse, int64_t step, const float* out, const float* hx) {
  const int64_t t = reverse ? s.T - 1 - step : step;
  if (step == 0) return {hx, s.batch_sizes[t], hx};
  const int64_t tp = reverse ? t + 1 : t - 1;
  const int64_t n = std::min(s.batch_sizes[t], s.batch_sizes[tp]);
  return {out + s.offsets[tp] * s.Hr, n, hx + n * s.Hr};
}

template <typename scalar_t, typename acc_t>
bool forward(const ForwardCall<scalar_t, acc_t>& call, const at::Tensor& Whh) {
  if constexpr (!std::is_same_v<scalar_t, float>) {
    return false;
  } else {
    const LayerShape& s = *call.s;
    const std::vector<int64_t> bounds = slices(s, Pass::kForward);
    if (bounds.empty()) return false;
    const int P = static_cast<int>(bounds.size()) - 1;
    const int64_t G = s.G, H = s.H, Hr = s.Hr, I = s.I, GH = G * H;
    std::vector<std::vector<cpu_packed::PackedWeight>> weights(P), input_weights(P);  // [slice][gate]
    // A batch of one row reads W_hh's rows in place (gemv_rows), unpacked: packing, memory bound,
    // cost 11% of gru_h1024_b1's inference samples with scalar reads, 5.7% with transposes. Time
    // saved within the noise (gru_h1024_b1 on Zen 4, interleaved, medians: inference 12.47 -> 12.31
    // ms over 40 rounds, training 35.8 -> 33.7 over 15), but no second 12 MB copy of W_hh in L3.
    const bool direct = s.B == 1;
    const float* whh = Whh.data_ptr<float>();
    const bool ran = run_slices(
        P,
        [&](int64_t p) {
          const int64_t u0 = bounds[p], U = bounds[p + 1] - u0;
          for (int64_t g = 0; g < G; ++g) {
            if (!direct) weights[p].emplace_back(whh + (g * H + u0) * Hr, U, Hr, true);
            if (call.step_proj) input_weights[p].emplace_back(call.wih + (g * H + u0) * I, U, I, true);
          }
        },
        [&](int64_t p, SpinBarrier& barrier) {
          const int64_t u0 = bounds[p], u1 = bounds[p + 1];
          for (int64_t step = 0; step < s.T; ++step) {
            const int64_t t = call.reverse ? s.T - 1 - step : step, b = s.batch_sizes[t];
            const PrevRows prev = prev_rows(s, call.reverse, step, call.out, call.hx);
            for (int64_t g = 0; g < G; ++g) {
              // With step_proj, this slice's x_t @ W_ih^T of the step into the B-row buffer xw.
              if (call.step_proj) {
                cpu_packed::gemm(b, call.x + s.offsets[t] * I, I, input_weights[p][g], 0.f, call.xw + g * H + u0,
                                 call.xw_ld);
              }
              float* hw = call.hw + g * H + u0;
              if (direct) {
                const float* a = prev.n ? prev.first : prev.second;
                if (b == 1) cpu_packed::gemv_rows(u1 - u0, Hr, a, whh + (g * H + u0) * Hr, Hr, hw);
                continue;
              }
              cpu_packed::gemm(prev.n, prev.first, Hr, weights[p][g], 0.f, hw, GH);
              if (b > prev.n) cpu_packed::gemm(b - prev.n, prev.second, Hr, weights[p][g], 0.f, hw + prev.n * GH, GH);
            }
            fusedrnn::forward_pointwise<float>(s, b, call.step(t, 0), u0, u1);
            barrier.wait();
          }
        });
    forward_calls.fetch_add(ran);
    step_proj_calls.fetch_add(ran && call.step_proj);
    return ran;
  }
}

template <typename scalar_t, typename acc_t>
bool backward(const BackwardCall<scalar_t, acc_t>& call, const at::Tensor& Whh) {
  if constexpr (!std::is_same_v<scalar_t, float>) {
    return false;
  } else {
    const LayerShape& s = *call.s;
    const std::vector<int64_t> bounds = slices(s, Pass::kBackward);
    if (bounds.empty()) return false;
    const int P = static_cast<int>(bounds.size()) - 1;
    const int64_t GH = s.G * s.H, Hr = s.Hr;
    const float beta = s.cell == CellType::GRU ? 1.f : 0.f;  // GRU adds to the direct part dh * z
    std::vector<cpu_packed::PackedWeight> weights(P);  // W_hh[:, slice], [GH, U]
    const bool ran = run_slices(
        P,
        [&](int64_t p) {
          const int64_t u0 = bounds[p], U = bounds[p + 1] - u0;
          const at::Tensor columns = Whh.narrow(1, u0, U).contiguous();
          weights[p] = cpu_packed::PackedWeight(columns.data_ptr<float>(), U, GH, false);
        },
        [&](int64_t p, SpinBarrier& barrier) {
          const int64_t u0 = bounds[p], u1 = bounds[p + 1];
          for (int64_t step = 0; step < s.T; ++step) {
            const int64_t t = call.reverse ? step : s.T - 1 - step, b = s.batch_sizes[t];
            const BackwardStep<float, float> st = call.step(t, 0);
            fusedrnn::backward_pointwise<float>(s, b, st, u0, u1);
            barrier.wait();  // every unit's gate gradients of the step are written
            cpu_packed::gemm(b, st.dg_h, GH, weights[p], beta, call.dh + u0, Hr);
          }
        });
    backward_calls.fetch_add(ran);
    return ran;
  }
}

}  // namespace unit_split

struct CpuBackend {
  struct Guard {
    explicit Guard(c10::Device) {}
  };

  static constexpr bool kRowBlocks = true;
  static constexpr bool kOwnStepLoops = true;
  template <typename scalar_t, typename acc_t>
  static bool own_forward_loop(const ForwardCall<scalar_t, acc_t>& call, const Tensor& Whh) {
    return unit_split::forward(call, Whh);
  }
  template <typename scalar_t, typename acc_t>
  static bool own_backward_loop(const BackwardCall<scalar_t, acc_t>& call, const Tensor& Whh) {
    return unit_split::backward(call, Whh);
  }
  template <typename F>
  static void for_row_blocks(const LayerShape& s, const F& f) {
    const int64_t P = row_block_count(s);
    if (P == 1) {
      // Tiny products lose more to the BLAS's threading than they gain: keep them on this thread.
      if (tiny_layer(s)) {
        struct Serial {
          cpu_blas::SingleThreadedBlas single;
          Serial() { serial_loop = true; }
          ~Serial() { serial_loop = false; }
        } serial;
        f(int64_t(0), s.B);
      } else {
        f(int64_t(0), s.B);
      }
      return;
    }
    const std::vector<int64_t> bounds = row_block_bounds(s, P);
    // Inside the parallel region the BLAS runs single-threaded by itself (no nested parallelism).
    at::parallel_for(0, P, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        if (bounds[p + 1] > bounds[p]) f(bounds[p], bounds[p + 1]);
      }
    });
  }

  // Buffers from the cache of freed blocks (cpu_pool): no page faults for the same sizes next call.
  static Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    return cpu_pool::empty(sizes, options);
  }
  static void check(const Tensor& input) {
    TORCH_CHECK(input.device().is_cpu(), "fusedrnn: the CPU kernel got a tensor on ", input.device());
    TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble,
                "fusedrnn: the CPU kernels support float32, float64, float16 and bfloat16, got ",
                input.scalar_type());
  }
  template <typename F>
  static void dispatch(at::ScalarType type, const F& f) {
    AT_DISPATCH_FLOATING_TYPES(type, "fusedrnn_layer_cpu", [&] { f(scalar_t(0)); });
  }
  // float32 weights of products that run one per thread are packed for cpu_packed::gemm when the
  // layer has rows enough to pay for it (cpu_packed::worth_packing); the rest (float64, threaded
  // products, short calls such as a cell's step, builds without AVX2, FUSEDRNN_PACKED_GEMM=0) go
  // to the BLAS.
  template <typename scalar_t>
  struct StepWeight {
    StepWeight() = default;
    StepWeight(const LayerShape& s, const Tensor& W, bool transpose_w)
        : w(W.data_ptr<scalar_t>()), transpose_w(transpose_w) {
      if constexpr (std::is_same_v<scalar_t, float>) {
        if (cpu_packed::worth_packing(s.N) && single_threaded_products(s)) {
          const int64_t n = transpose_w ? W.size(0) : W.size(1), k = transpose_w ? W.size(1) : W.size(0);
          packed = cpu_packed::PackedWeight(w, n, k, transpose_w);
        }
      }
    }
    const scalar_t* w = nullptr;
    bool transpose_w = true;
    cpu_packed::PackedWeight packed;
  };
  // Whole-sequence products with the weight as it is, out = A @ op(W) (op(W) = W^T when
  // transpose_w): float32 through the packed kernel when there are rows enough (see
  // worth_packing), rows split in one contiguous range per thread; false otherwise (the BLAS).
  static bool packed_product(Tensor& out, const Tensor& A, const Tensor& W, bool transpose_w) {
    if (A.scalar_type() != at::kFloat || at::in_parallel_region() || !cpu_packed::available()) return false;
    const int64_t N = A.size(0), k = A.size(1), n = transpose_w ? W.size(0) : W.size(1), ld = out.stride(0);
    if (!cpu_packed::worth_packing(N)) return column_split_product(out, A, W, transpose_w);
    const cpu_packed::PackedWeight P(W.data_ptr<float>(), n, k, transpose_w);
    const float* a = A.data_ptr<float>();
    float* o = out.data_ptr<float>();
    const int64_t grain = std::max<int64_t>(6, (int64_t(1) << 16) / std::max<int64_t>(1, n * k));
    at::parallel_for(0, N, grain, [&](int64_t r0, int64_t r1) {
      cpu_packed::gemm(r1 - r0, a + r0 * k, k, P, 0.f, o + r0 * ld, ld);
    });
    return true;
  }
  // Fewer rows than pay for packing the whole weight (worth_packing), against a W^T of
  // kMinColumnSplitWeights or more: the threads split W's rows (C's columns) between them and
  // multiply every row of A with their part, so each reads only its part of W, and packs only it
  // (the packing, split between the threads too, pays from a few rows on; below, gemv_rows reads
  // W's rows in place). MKL's sgemm copies all of W on every call (mkl_blas_def_sgemm_scopy_right16:
  // 20% of gru_h1024_b1's samples at 8 steps). That layer's 100 x 256 x 3072 projection, on a
  // 2-core AMD EPYC Zen 4: MKL 1.5-1.8 ms, the kernel at 105-111 GFLOP/s a core; the whole layer,
  // interleaved, medians of 60: 12.5 -> 11.2 ms (T100), 4.78 -> 4.30 (T32), 2.14 -> 1.77 (T8).
  static constexpr int64_t kMinColumnSplitWeights = int64_t(1) << 16;
  static constexpr int64_t kMaxGemvRows = 4;
  static bool column_split_product(Tensor& out, const Tensor& A, const Tensor& W, bool transpose_w) {
    const int64_t N = A.size(0), k = A.size(1), n = W.size(0), ld = out.stride(0);
    if (!transpose_w || N == 0 || n * k < kMinColumnSplitWeights) return false;
    const float* w = W.data_ptr<float>();
    const float* a = A.data_ptr<float>();
    float* o = out.data_ptr<float>();
    const int64_t panels = (n + 15) / 16;
    at::parallel_for(0, panels, 1, [&](int64_t p0, int64_t p1) {
      const int64_t c0 = p0 * 16, c1 = std::min(n, p1 * 16);
      if (N <= kMaxGemvRows) {
        for (int64_t r = 0; r < N; ++r) cpu_packed::gemv_rows(c1 - c0, k, a + r * k, w + c0 * k, k, o + r * ld + c0);
        return;
      }
      const cpu_packed::PackedWeight P(w + c0 * k, c1 - c0, k, true);
      cpu_packed::gemm(N, a, k, P, 0.f, o + c0, ld);
    });
    column_split_calls.fetch_add(1);
    return true;
  }
  // xw = X @ W_ih^T for all rows at once. On one core MKL's sgemm took 1.05-1.8x as long at these
  // shapes (8192 x 256 x 100: 9.5-11.0 ms vs 5.3-6.0) and zeroes C in a pass of its own first (4%
  // of a char_lstm inference in perf). Whole layers, 15 interleaved rounds, medians: imdb_rnn
  // inference 46.0 -> 44.7 ms, char_lstm 28.7 -> 26.6, fastai_gru 21.0 -> 19.8.
  static void input_projection(Tensor& xw, const Tensor& X, const Tensor& W) {
    if (!packed_product(xw, X, W, true)) at::mm_out(xw, X, W.t());
  }
  // dX = dG @ W_ih. Half of a model's rows on one core, kernel vs MKL: imdb_rnn 6.9 vs 8.9 ms,
  // fastai_rnn 3.0 vs 4.0, fastai_gru 8.9 vs 10.5, char_lstm 5.4 vs 7.1, fastai_lstm 11.2 vs 17.7.
  static Tensor input_grad(const Tensor& dG, const Tensor& W) {
    Tensor dX = cpu_pool::empty({dG.size(0), W.size(1)}, dG.options());
    if (!packed_product(dX, dG, W, false)) at::mm_out(dX, dG, W);
    return dX;
  }

  // Weight and bias gradients of float32 layers through cpu_packed::weight_grad when there are
  // rows enough (worth_packing) and the gradients are small (the result's size, kMaxPackedGradBytes:
  // the kernel adds each chunk of rows into all of it): RNN and LSTM in one product
  // dG^T [X | h_prev | 1], GRU (whose two sides have different gate gradients) in two. Otherwise
  // false: the driver's BLAS products. On an Intel Xeon with AVX-512, 2 threads, against MKL
  // (its products plus the bias sum): 0.5 MB of gradients 7.1 vs 7.4 ms, 1.6 MB 87 vs 72, 8.4 MB
  // 106 vs 82, an LSTM of hidden 1152 (28.6 MB) 134 vs 76.
  static constexpr bool kWeightGrad = true;
  static constexpr int64_t kMaxPackedGradBytes = int64_t(1) << 20;
  static bool weight_grads(const LayerShape& s, bool reverse, const Tensor& X, const Tensor& Y, const Tensor& H0,
                           const Tensor& h_prev, const Tensor& dg_x, const Tensor& dg_h, bool has_bih,
                           bool has_bhh, Tensor& gw_ih, Tensor& gw_hh, Tensor& gb_ih, Tensor& gb_hh) {
    const int64_t grad_bytes = s.G * s.H * (s.I + s.Hr + 1) * int64_t(sizeof(float));
    if (X.scalar_type() != at::kFloat || !cpu_packed::worth_packing(s.N)) return false;
    if (grad_bytes > kMaxPackedGradBytes && !cpu_packed::forced()) return false;
    // The state each row met, as segments of the rows (see driver::dense_prev_rows).
    std::vector<cpu_packed::GradSegment> prev;
    if (s.packed) {
      prev.push_back({0, h_prev.data_ptr<float>(), s.N});
    } else {
      const driver::DensePrevRows d = driver::dense_prev_rows(s, reverse);
      prev.push_back({d.first, H0.data_ptr<float>(), s.B});
      if (d.rest > 0) prev.push_back({d.later, Y.data_ptr<float>() + d.prev * s.Hr, d.rest});
    }
    const int64_t GH = s.G * s.H, I = s.I, Hr = s.Hr;
    // C = dG^T [X | h_prev | 1], each part when asked for: [GH, I | Hr | 1].
    auto product = [&](const Tensor& dG, bool x, bool h, bool ones) {
      const Tensor C = cpu_pool::empty({GH, (x ? I : 0) + (h ? Hr : 0) + (ones ? 1 : 0)}, X.options());
      const cpu_packed::GradSegment all{0, nullptr, s.N};
      cpu_packed::weight_grad(GH, dG.data_ptr<float>(), GH, x ? I : 0, x ? X.data_ptr<float>() : nullptr, I,
                              h ? Hr : 0, ones, h ? prev.data() : &all, h ? static_cast<int64_t>(prev.size()) : 1,
                              C.data_ptr<float>());
      return C;
    };
    // Separate, contiguous outputs (an op's outputs must not alias each other).
    auto part = [](const Tensor& t) { return t.clone(at::MemoryFormat::Contiguous); };
    if (dg_h.is_same(dg_x)) {
      const Tensor C = product(dg_x, true, true, has_bih || has_bhh);
      gw_ih = part(C.narrow(1, 0, I));
      gw_hh = part(C.narrow(1, I, Hr));
      if (has_bih) gb_ih = part(C.select(1, I + Hr));
      if (has_bhh) gb_hh = part(C.select(1, I + Hr));
      return true;
    }
    const Tensor Cx = product(dg_x, true, false, has_bih), Ch = product(dg_h, false, true, has_bhh);
    gw_ih = part(Cx.narrow(1, 0, I));
    gw_hh = part(Ch.narrow(1, 0, Hr));
    if (has_bih) gb_ih = part(Cx.select(1, I));
    if (has_bhh) gb_hh = part(Ch.select(1, Hr));
    return true;
  }

  // Where the step products run on the packed kernel one per thread, each block also computes its
  // rows' x_t @ W_ih^T per step (W_ih packed too) into a buffer of B rows that stays in cache: no
  // (N, G*H) buffer to fill and read back. Not for a tiny layer on one block while other threads
  // are free: its whole-sequence projection is split between them. 7 interleaved rounds, best
  // times, inference: imdb_rnn 23.0 -> 22.1 ms, fastai_rnn 7.09 -> 6.91, fastai_gru 17.7 -> 17.1,
  // char_lstm 25.9 -> 25.2, imdb_gru_packed 145 -> 140.
  static constexpr bool kStepInputProjection = true;
  // With the hidden units split between threads (unit_split), each thread projects its own units
  // of every row per step too, from kMinStepProjRows rows a step on: its slice of W_ih is read again
  // every step, for 2 flops a weight a row. Inference, 12 interleaved rounds, medians, on a 2-core
  // AMD EPYC Zen 4: lstm_h512 (32 rows a step) 54.3 -> 51.1 ms; but at 16 rows a step the reads
  // cost more than the cache saves (awd_lstm_b16 93.0 -> 104.5 ms, lstm_h1536 167 -> 190), and at
  // 64 it is even (awd_lstm_b64 340 vs 345).
  static constexpr int64_t kMinStepProjRows = 32;
  // FUSEDRNN_STEP_PROJ=0 (read per call) keeps to the whole-sequence product (comparisons).
  static bool step_input_projection(const LayerShape& s, at::ScalarType type) {
    const char* e = std::getenv("FUSEDRNN_STEP_PROJ");
    if (e != nullptr && std::string(e) == "0") return false;
    if (type != at::kFloat || !cpu_packed::worth_packing(s.N) || !single_threaded_products(s)) return false;
    if (!unit_split::slices(s, unit_split::Pass::kForward).empty()) return s.B >= kMinStepProjRows || cpu_packed::forced();
    const bool spare_threads = at::get_num_threads() > 1 && !at::in_parallel_region();
    return !(tiny_layer(s) && row_block_count(s) == 1 && spare_threads);
  }
  template <typename scalar_t>
  static void gemm_ld(int64_t m, int64_t n, int64_t k, const scalar_t* A, const StepWeight<scalar_t>& W,
                      scalar_t beta, scalar_t* C, int64_t ldc, const at::TensorOptions&) {
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (W.packed.defined()) {
        TORCH_CHECK(W.packed.n() == n && W.packed.k() == k, "fusedrnn: internal error: step product of shape (",
                    n, ", ", k, ") against a packed weight of shape (", W.packed.n(), ", ", W.packed.k(), ")");
        return cpu_packed::gemm(m, A, k, W.packed, beta, C, ldc);
      }
    }
    TORCH_CHECK(ldc == n, "fusedrnn: internal error: BLAS step product with padded rows");
    cpu_blas::gemm<scalar_t>(m, n, k, A, W.w, W.transpose_w, beta, C);
  }
  template <typename scalar_t>
  static void gemm(int64_t m, int64_t n, int64_t k, const scalar_t* A, const StepWeight<scalar_t>& W,
                   scalar_t beta, scalar_t* C, const at::TensorOptions& opts) {
    gemm_ld(m, n, k, A, W, beta, C, n, opts);
  }
  template <typename scalar_t>
  static void forward_pointwise(const LayerShape& s, int64_t b, const ForwardStep<scalar_t, scalar_t>& p) {
    fusedrnn::forward_pointwise<scalar_t>(s, b, p);
  }
  template <typename scalar_t>
  static void backward_pointwise(const LayerShape& s, int64_t b, const BackwardStep<scalar_t, scalar_t>& p) {
    fusedrnn::backward_pointwise<scalar_t>(s, b, p);
  }
};

}  // namespace

cpu_loop::Stats cpu_loop::stats() {
  return {unit_split::forward_calls.load(), unit_split::backward_calls.load(), unit_split::step_proj_calls.load(),
          column_split_calls.load()};
}

namespace {

// ---- float16 and bfloat16 storage -----------------------------------------------------------
// fusedrnn has no half / bfloat16 products for the CPU (and this machine class has neither
// AVX512-BF16 nor AMX to make them pay), so a layer stored in either runs the float32 kernels: its
// tensors widened once per call, the math, h and the LSTM cell state between steps and the reserve
// in float32, the results rounded once to the storage type. The reserve stays float32, the math
// type, as on CUDA. The backward widens what the forward rounded (the output, read back as the
// state each step met), so its products use the stored values.
bool reduced(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

Tensor widen(const Tensor& t) {
  if (!t.defined()) return t;
  if (driver::rows_broadcast(t) && t.numel() > t.size(-1)) {  // a gradient broadcast over the rows stays one row
    return widen(t.as_strided({t.size(-1)}, {t.stride(-1)})).expand(t.sizes());
  }
  Tensor w = cpu_pool::empty(t.sizes(), t.options().dtype(at::kFloat));
  w.copy_(t);
  return w;
}
optional<Tensor> widen(const optional<Tensor>& t) {
  return driver::defined(t) ? optional<Tensor>(widen(*t)) : t;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> layer_forward_cpu(
    c10::string_view cell, const Tensor& input, const optional<Tensor>& batch_sizes, const Tensor& hx,
    const optional<Tensor>& cx, const Tensor& w_ih, const Tensor& w_hh, const optional<Tensor>& b_ih,
    const optional<Tensor>& b_hh, const optional<Tensor>& w_hr, bool reverse, bool train) {
  const at::ScalarType type = input.scalar_type();
  if (!reduced(type)) {
    return layer_forward_impl<CpuBackend>(cell, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse,
                                          train);
  }
  // Checked as stored first: a tensor of another dtype is an error, not widened into agreement.
  check_layer_args(cell, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr);
  auto [out, hy, cy, reserve] =
      layer_forward_impl<CpuBackend>(cell, widen(input), batch_sizes, widen(hx), widen(cx), widen(w_ih),
                                     widen(w_hh), widen(b_ih), widen(b_hh), widen(w_hr), reverse, train);
  return {out.to(type), hy.to(type), cy.to(type), reserve};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> layer_backward_cpu(
    c10::string_view cell, const Tensor& input, const optional<Tensor>& batch_sizes, const Tensor& hx,
    const optional<Tensor>& cx, const Tensor& w_ih, const Tensor& w_hh, const optional<Tensor>& b_ih,
    const optional<Tensor>& b_hh, const optional<Tensor>& w_hr, bool reverse, const Tensor& output,
    const Tensor& reserve, const optional<Tensor>& grad_output, const optional<Tensor>& grad_hy,
    const optional<Tensor>& grad_cy, bool need_input_grad, bool need_weight_grads) {
  const at::ScalarType type = input.scalar_type();
  if (!reduced(type)) {
    return layer_backward_impl<CpuBackend>(cell, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse,
                                           output, reserve, grad_output, grad_hy, grad_cy, need_input_grad,
                                           need_weight_grads);
  }
  check_layer_args(cell, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr);
  for (const auto* g : {&grad_output, &grad_hy, &grad_cy}) {
    if (driver::defined(*g)) check_same(input, **g, "a gradient");
  }
  check_same(input, output, "output");
  auto [gx, ghx, gcx, gw_ih, gw_hh, gb_ih, gb_hh, gw_hr] = layer_backward_impl<CpuBackend>(
      cell, widen(input), batch_sizes, widen(hx), widen(cx), widen(w_ih), widen(w_hh), widen(b_ih), widen(b_hh),
      widen(w_hr), reverse, widen(output), reserve, widen(grad_output), widen(grad_hy), widen(grad_cy),
      need_input_grad, need_weight_grads);
  return {gx.to(type), ghx.to(type), gcx.to(type), gw_ih.to(type), gw_hh.to(type), gb_ih.to(type), gb_hh.to(type),
          gw_hr.to(type)};
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
  m.impl("layer_forward", &layer_forward_cpu);
  m.impl("layer_backward", &layer_backward_cpu);
}

}  // namespace fusedrnn
