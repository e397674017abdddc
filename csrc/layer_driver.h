// The host-side loop of the layer ops, shared by every backend.
//
// Forward: XW = X @ W_ih^T for all rows at once (or per step, kStepInputProjection); then per
// step t (rows [off, off + b), or a block of them, see for_row_blocks):
//   HW = h[:b] @ W_hh^T (one GEMM), then one fused pointwise pass (Backend::forward_pointwise)
//   that adds b_ih and b_hh, applies the cell (cell_math.h), updates the state in place and writes the
//   output rows and, in training, the reserve the backward needs; with projections one more
//   GEMM h = h_raw @ W_hr^T.
// Backward: the steps in reverse, one fused pointwise pass (Backend::backward_pointwise) for the
//   gate gradients and one GEMM dh_prev = dG @ W_hh per step; then whole-sequence GEMMs for dX,
//   dW_ih, dW_hh, dW_hr and sums for the biases. No atomics: results are deterministic.
//
// A Backend provides:
//   Guard                                                        // constructed from the input's device
//   static void check(const Tensor& input);                       // device / dtype support
//   static Tensor empty(IntArrayRef sizes, const TensorOptions&); // the large buffers of a call (output,
//                                          // reserve, gate gradients, copies), as at::empty (the CPU
//                                          // takes them from its cache of freed blocks, cpu_pool)
//   template <class F> static void dispatch(ScalarType, const F&); // calls f(scalar_t{}) per dtype
//   template <class S, class A> static void forward_pointwise(const LayerShape&, int64_t b, const ForwardStep<S, A>&);
//   template <class S, class A> static void backward_pointwise(const LayerShape&, int64_t b, const BackwardStep<S, A>&);
//   template <class S> struct StepWeight;  // a per-step product's weight, prepared once per layer
//                                          // call (the CPU packs it for its own kernel):
//                                          // StepWeight(const LayerShape&, const Tensor& W, bool transpose_w),
//                                          // and StepWeight() for none
//   template <class S> static void gemm(m, n, k, const S* A, const StepWeight<S>& W, C_t beta, C_t* C,
//                                       const TensorOptions&);  // per-step product C = A @ op(W) + beta C,
//                                          // op(W) = W^T ([n, k]) when transpose_w, else W ([k, n]);
//                                          // C_t is S, or opmath_type<S> for the recurrent product hw
//   static void input_projection(Tensor& xw, const Tensor& X, const Tensor& W_ih);  // xw = X @ W_ih^T,
//                                          // X [N, I] and W_ih contiguous, xw's rows padded, xw in the
//                                          // math type
//   static Tensor input_grad(const Tensor& dG, const Tensor& W_ih);  // dX = dG @ W_ih, [N, I]
//   static constexpr bool kStepInputProjection;  // true: static bool step_input_projection(const
//                                          // LayerShape&, ScalarType) says per layer call whether each
//                                          // step's block of rows computes its own x_t @ W_ih^T, with
//                                          // gemm_ld(m, n, k, A, W, beta, C, ldc, opts) (C's rows ldc
//                                          // apart) into a buffer of B rows, instead of one product
//                                          // for all rows
//   static constexpr bool kWeightGrad;     // true: static bool weight_grads(s, reverse, X, Y, H0,
//                                          // h_prev, dg_x, dg_h, has_b_ih, has_b_hh, gw_ih&, gw_hh&,
//                                          // gb_ih&, gb_hh&) computes the weight and bias gradients or
//                                          // returns false (then the driver's BLAS products do)
//   static constexpr bool kOwnStepLoops;   // true: template <class S, class A> static bool
//                                          // own_forward_loop(const ForwardCall<S, A>&, const Tensor& W_hh)
//                                          // and own_backward_loop(const BackwardCall<S, A>&, W_hh) run
//                                          // the whole step loop themselves (the CPU: the hidden units
//                                          // split between threads; CUDA: persistent kernels) or return
//                                          // false untouched; with step_proj they compute each step's
//                                          // x_t @ W_ih^T into call.xw themselves
//   static constexpr bool kRowBlocks;      // true: template <class F> static void
//                                          // for_row_blocks(const LayerShape&, const F& f) calls
//                                          // f(r0, r1) over blocks of rows covering [0, B), each
//                                          // block run through all steps on its own (rows never
//                                          // mix); false: the loop runs once over all rows
// scalar_t is the storage type, acc_t = at::opmath_type<scalar_t> the math type: the LSTM cell
// state and the reserve are kept in acc_t (float for half / bfloat16 storage).
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>

#include <tuple>

#include "layer_common.h"

namespace fusedrnn {

using c10::optional;

// Raw pointers of one forward step. Row r of the step is row (off + r) of xw / out / reserve
// and row r of the state buffers.
// The products xw and hw are kept in acc_t: half / bfloat16 storage sums its pre-activations from
// float products, never from products rounded to the storage type.
template <typename scalar_t, typename acc_t>
struct ForwardStep {
  const acc_t* xw;      // [b, G*H] input projection rows (without b_ih), xw_ld apart
  int64_t xw_ld;
  const scalar_t* bih;  // [G*H] b_ih (zeros when there is no bias), added by the pointwise pass
  const acc_t* hw;      // [b, G*H] h_prev @ W_hh^T
  const scalar_t* bhh;  // [G*H] (zeros when there is no bias)
  scalar_t* h;          // [b, Hr] state: h_prev in, h out (unused with projections)
  acc_t* c;             // [b, H] LSTM cell state: c_prev in, c out
  scalar_t* out;        // [b, Hr] output rows (unused with projections)
  scalar_t* h_raw;      // [b, H] LSTM pre-projection h (projections only)
  acc_t* reserve;       // [b, reserve_width] or nullptr when not training
};

// Raw pointers of one backward step; rows as in ForwardStep.
template <typename scalar_t, typename acc_t>
struct BackwardStep {
  const acc_t* reserve;    // [b, reserve_width]
  const scalar_t* out;     // [b, H] output rows (RNN: h_t)
  const scalar_t* h_prev;  // [b, H] GRU: state before the step
  const acc_t* c_prev;     // [b, H] LSTM: cell state before the step
  const scalar_t* dy;      // [b, Hr] grad_output rows, dy_ld apart, or nullptr (none, or already in dh)
  int64_t dy_ld;           // Hr, or 0: one row for all (a gradient broadcast over the rows)
  scalar_t* dh;            // [b, *] gradient reaching h_t (LSTM with projections: h_raw);
                           // GRU: overwritten with the direct part of dh_prev (dh * z)
  acc_t* dc;               // [b, H] LSTM: dc_t in, dc_{t-1} out
  scalar_t* dg_x;          // [b, G*H] pre-activation gate gradients (input side)
  scalar_t* dg_h;          // [b, G*H] GRU: gate gradients on the recurrent side
};

// The raw pointers of a layer call's forward step loop; step(t, r0) gives step t's rows from r0 on.
template <typename scalar_t, typename acc_t>
struct ForwardCall {
  const LayerShape* s;
  bool reverse;
  acc_t* xw;              // [N or B, G*H] rows xw_ld apart: all rows, or (step_proj) B rows rewritten per step
  int64_t xw_ld;
  bool step_proj;
  const scalar_t* bih;    // [G*H]
  const scalar_t* bhh;    // [G*H]
  const scalar_t* hx;     // [B, Hr] the initial state
  scalar_t* hy;           // [B, Hr] the state: hx in, h_n out
  acc_t* c;               // [B, H] LSTM cell state, or nullptr
  scalar_t* out;          // [N, Hr]
  scalar_t* h_raw;        // [B, H] LSTM pre-projection h, or nullptr
  acc_t* reserve;         // [N, reserve_width] or nullptr (inference)
  acc_t* hw;              // [B, G*H] the recurrent products
  const scalar_t* x;      // [N, I] the input rows (a backend's own loop reads them with step_proj)
  const scalar_t* wih;    // [G*H, I] W_ih, contiguous

  ForwardStep<scalar_t, acc_t> step(int64_t t, int64_t r0) const {
    const int64_t off = s->offsets[t] + r0;
    ForwardStep<scalar_t, acc_t> p;
    p.xw = xw + (step_proj ? r0 : off) * xw_ld;
    p.xw_ld = xw_ld;
    p.bih = bih;
    p.hw = hw + r0 * s->G * s->H;
    p.bhh = bhh;
    p.h = hy + r0 * s->Hr;
    p.c = c ? c + r0 * s->H : nullptr;
    p.out = out + off * s->Hr;
    p.h_raw = h_raw ? h_raw + r0 * s->H : nullptr;
    p.reserve = reserve ? reserve + off * s->reserve_width() : nullptr;
    return p;
  }
};

// The raw pointers of a layer call's backward step loop; step(t, r0) gives step t's rows from r0 on.
template <typename scalar_t, typename acc_t>
struct BackwardCall {
  const LayerShape* s;
  bool reverse;
  const acc_t* reserve;   // [N, reserve_width]
  const scalar_t* out;    // [N, Hr]
  const scalar_t* h0;     // [B, Hr] hx
  const scalar_t* h_prev; // [N, Hr] each row's state before its step (packed layers), or nullptr (dense: read
                          // in place, from h0 or the output rows of the step before)
  const acc_t* c_prev;    // [N, H] LSTM, or nullptr
  const scalar_t* dy;     // [N, Hr] rows dy_ld apart, or nullptr
  int64_t dy_ld;
  scalar_t* dh;           // [B, Hr] the gradient reaching h_t: grad_hy in, grad_hx out
  acc_t* dc;              // [B, H] LSTM
  scalar_t* dg_x;         // [N, G*H]
  scalar_t* dg_h;         // [N, G*H] (dg_x but for GRU)

  BackwardStep<scalar_t, acc_t> step(int64_t t, int64_t r0) const {
    const int64_t off = s->offsets[t] + r0, GH = s->G * s->H;
    BackwardStep<scalar_t, acc_t> p;
    p.reserve = reserve ? reserve + off * s->reserve_width() : nullptr;
    p.out = out + off * s->Hr;
    if (h_prev) {
      p.h_prev = h_prev + off * s->Hr;
    } else {
      const bool first = reverse ? t == s->T - 1 : t == 0;
      p.h_prev = first ? h0 + r0 * s->Hr : out + (s->offsets[reverse ? t + 1 : t - 1] + r0) * s->Hr;
    }
    p.c_prev = c_prev ? c_prev + off * s->H : nullptr;
    p.dy = dy ? dy + off * dy_ld : nullptr;
    p.dy_ld = dy_ld;
    p.dh = dh + r0 * s->Hr;
    p.dc = dc ? dc + r0 * s->H : nullptr;
    p.dg_x = dg_x + off * GH;
    p.dg_h = dg_h + off * GH;
    return p;
  }
};

namespace driver {

inline Tensor empty_like_none(const Tensor& ref) { return at::empty({0}, ref.options()); }

// t itself when contiguous, else a contiguous copy in a buffer of the backend's.
template <typename Backend>
inline Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor c = Backend::empty(t.sizes(), t.options());
  c.copy_(t);
  return c;
}

inline bool defined(const optional<Tensor>& t) { return t.has_value() && t->defined(); }

// Whether t (dims ..., Hr) is one row of Hr repeated: stride 0 (or size 1) in every dim but the last.
inline bool rows_broadcast(const Tensor& t) {
  if (t.dim() < 2) return false;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) {
    if (t.stride(d) != 0 && t.size(d) != 1) return false;
  }
  return true;
}

// Dense layout (T > 0), in rows of the (N, width) sequence: the B rows of the first step processed
// start at `first` and met the initial state; the other `rest` rows start at `later` and met the
// rows starting at `prev` (the output of the step before in processing order: t -+ 1).
struct DensePrevRows {
  int64_t first, later, prev, rest;
};
inline DensePrevRows dense_prev_rows(const LayerShape& s, bool reverse) {
  const int64_t rest = s.N - s.B;
  return {reverse ? rest : 0, reverse ? 0 : s.B, reverse ? s.B : 0, rest};
}

// The state each row had before each step, as an (N, width) matrix: the row of `init` at the
// sequence's first step, otherwise the row of `seq` written by the previous step in processing order.
template <typename Backend>
inline Tensor gather_prev_states(const LayerShape& s, bool reverse, const Tensor& seq, const Tensor& init) {
  Tensor prev = Backend::empty({s.N, seq.size(1)}, seq.options());
  if (!s.packed && s.T > 0) {  // two copies in all
    const DensePrevRows d = dense_prev_rows(s, reverse);
    prev.narrow(0, d.first, s.B).copy_(init);
    if (d.rest > 0) prev.narrow(0, d.later, d.rest).copy_(seq.narrow(0, d.prev, d.rest));
    return prev;
  }
  for (int64_t t = 0; t < s.T; ++t) {
    const int64_t b = s.batch_sizes[t], off = s.offsets[t];
    const bool has_prev = reverse ? t + 1 < s.T : t > 0;
    const int64_t tp = reverse ? t + 1 : t - 1;
    const int64_t from_seq = has_prev ? std::min(b, s.batch_sizes[tp]) : 0;
    if (from_seq > 0) prev.narrow(0, off, from_seq).copy_(seq.narrow(0, s.offsets[tp], from_seq));
    if (b > from_seq) prev.narrow(0, off + from_seq, b - from_seq).copy_(init.narrow(0, from_seq, b - from_seq));
  }
  return prev;
}

template <typename Backend, typename F>
void for_row_blocks(const LayerShape& s, const F& f) {
  if constexpr (Backend::kRowBlocks) {
    Backend::for_row_blocks(s, f);
  } else {
    f(int64_t(0), s.B);
  }
}

}  // namespace driver

template <typename Backend>
std::tuple<Tensor, Tensor, Tensor, Tensor> layer_forward_impl(
    c10::string_view cell_name, const Tensor& input, const optional<Tensor>& batch_sizes,
    const Tensor& hx, const optional<Tensor>& cx, const Tensor& w_ih, const Tensor& w_hh,
    const optional<Tensor>& b_ih, const optional<Tensor>& b_hh, const optional<Tensor>& w_hr,
    bool reverse, bool train) {
  const typename Backend::Guard guard(input.device());
  const LayerShape s = check_layer_args(cell_name, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr);
  Backend::check(input);
  const bool lstm = s.cell == CellType::LSTM;
  const int64_t GH = s.G * s.H, RW = s.reserve_width();
  const auto opts = input.options();
  const auto acc_opts = opts.dtype(at::toOpMathType(input.scalar_type()));

  const Tensor X = driver::contiguous<Backend>(input).view({s.N, s.I});
  const Tensor Wih = w_ih.contiguous(), Whh = w_hh.contiguous();
  const Tensor bhh = driver::defined(b_hh) ? b_hh->contiguous() : at::zeros({GH}, opts);
  const Tensor Whr = s.proj ? w_hr->contiguous() : Tensor();

  // Rows of xw start on 64-byte boundaries: the BLAS writes a (N, 300) product 1.6x slower with
  // rows 1200 bytes apart than 1216 (measured with MKL on 2 cores), and the pointwise passes only
  // need the row distance.
  const int64_t align = 64 / static_cast<int64_t>(c10::elementSize(acc_opts.dtype().toScalarType()));
  const int64_t xw_ld = (GH + align - 1) / align * align;
  // The forward pointwise pass adds b_ih (p.bih), so the input projection is a plain product: no
  // broadcast copy of b_ih into every row of xw, as addmm makes before its product.
  const Tensor bih = driver::defined(b_ih) ? b_ih->contiguous() : at::zeros({GH}, opts);
  // Per-step input projection: each step's block of rows computes its own x_t @ W_ih^T into a
  // buffer of B rows, reused every step, before its recurrent product.
  bool step_proj = false;
  if constexpr (Backend::kStepInputProjection) step_proj = Backend::step_input_projection(s, input.scalar_type());
  Tensor xw = Backend::empty({step_proj ? s.B : s.N, xw_ld}, acc_opts).narrow(1, 0, GH);
  if (!step_proj) Backend::input_projection(xw, X, Wih);
  Tensor out = Backend::empty({s.N, s.Hr}, opts);
  const Tensor hx_c = hx.contiguous();
  Tensor hy = hx_c.clone();  // state buffer; holds h_n at the end
  Tensor c_state = lstm ? cx->to(acc_opts.dtype()).contiguous().clone() : Tensor();
  Tensor reserve = Backend::empty({train ? s.N : 0, RW}, acc_opts);
  Tensor hw = at::empty({s.B, GH}, acc_opts);
  Tensor h_raw = s.proj ? at::empty({s.B, s.H}, opts) : Tensor();

  Backend::dispatch(input.scalar_type(), [&](auto zero) {
    using scalar_t = decltype(zero);
    using acc_t = at::opmath_type<scalar_t>;
    const ForwardCall<scalar_t, acc_t> call{&s,
                                            reverse,
                                            xw.data_ptr<acc_t>(),
                                            xw_ld,
                                            step_proj,
                                            bih.data_ptr<scalar_t>(),
                                            bhh.data_ptr<scalar_t>(),
                                            hx_c.data_ptr<scalar_t>(),
                                            hy.data_ptr<scalar_t>(),
                                            lstm ? c_state.data_ptr<acc_t>() : nullptr,
                                            out.data_ptr<scalar_t>(),
                                            s.proj ? h_raw.data_ptr<scalar_t>() : nullptr,
                                            train && RW > 0 ? reserve.data_ptr<acc_t>() : nullptr,
                                            hw.data_ptr<acc_t>(),
                                            X.data_ptr<scalar_t>(),
                                            Wih.data_ptr<scalar_t>()};
    // A backend may run the step loop itself (the CPU's unit split, CUDA's persistent kernels).
    if constexpr (Backend::kOwnStepLoops) {
      if (Backend::own_forward_loop(call, Whh)) return;
    }
    using StepWeight = typename Backend::template StepWeight<scalar_t>;
    const StepWeight whh(s, Whh, true);
    const StepWeight whr = s.proj ? StepWeight(s, Whr, true) : StepWeight();
    const StepWeight wih = step_proj ? StepWeight(s, Wih, true) : StepWeight();
    driver::for_row_blocks<Backend>(s, [&](int64_t r0, int64_t r1) {
      for (int64_t step = 0; step < s.T; ++step) {
        const int64_t t = reverse ? s.T - 1 - step : step;
        // This block's rows of step t: [r0, min(batch_sizes[t], r1)).
        const int64_t b = std::min(s.batch_sizes[t], r1) - r0, off = s.offsets[t] + r0;
        if (b <= 0) continue;
        const ForwardStep<scalar_t, acc_t> p = call.step(t, r0);
        if constexpr (Backend::kStepInputProjection) {
          if (step_proj) {
            Backend::gemm_ld(b, GH, s.I, X.data_ptr<scalar_t>() + off * s.I, wih, scalar_t(0), call.xw + r0 * xw_ld,
                             xw_ld, opts);
          }
        }
        Backend::gemm(b, GH, s.Hr, p.h, whh, acc_t(0), call.hw + r0 * GH, opts);
        Backend::forward_pointwise(s, b, p);
        if (s.proj) {
          Backend::gemm(b, s.Hr, s.H, p.h_raw, whr, scalar_t(0), p.out, opts);
          hy.narrow(0, r0, b).copy_(out.narrow(0, off, b));
        }
      }
    });
  });
  Tensor cy = lstm ? c_state.to(input.scalar_type()) : driver::empty_like_none(input);
  return {out.view(output_sizes(input, s.Hr)), hy, cy, reserve};
}

template <typename Backend>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> layer_backward_impl(
    c10::string_view cell_name, const Tensor& input, const optional<Tensor>& batch_sizes,
    const Tensor& hx, const optional<Tensor>& cx, const Tensor& w_ih, const Tensor& w_hh,
    const optional<Tensor>& b_ih, const optional<Tensor>& b_hh, const optional<Tensor>& w_hr,
    bool reverse, const Tensor& output, const Tensor& reserve, const optional<Tensor>& grad_output,
    const optional<Tensor>& grad_hy, const optional<Tensor>& grad_cy, bool need_input_grad,
    bool need_weight_grads) {
  const typename Backend::Guard guard(input.device());
  const LayerShape s = check_layer_args(cell_name, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr);
  Backend::check(input);
  const bool lstm = s.cell == CellType::LSTM, gru = s.cell == CellType::GRU;
  const int64_t GH = s.G * s.H, RW = s.reserve_width();
  const auto opts = input.options();
  const auto acc_type = at::toOpMathType(input.scalar_type());
  TORCH_CHECK(output.numel() == s.N * s.Hr, "fusedrnn: output has ", output.numel(), " elements, expected ",
              s.N * s.Hr);
  TORCH_CHECK(RW == 0 || (reserve.dim() == 2 && reserve.size(0) == s.N && reserve.size(1) == RW &&
                          reserve.scalar_type() == acc_type),
              "fusedrnn: backward needs the reserve of a forward run with train=True (expected shape (", s.N,
              ", ", RW, "), got ", reserve.sizes(), ")");

  const Tensor X = driver::contiguous<Backend>(input).view({s.N, s.I});
  const Tensor Y = driver::contiguous<Backend>(output).view({s.N, s.Hr});
  const Tensor R = driver::contiguous<Backend>(reserve);
  const Tensor Wih = w_ih.contiguous(), Whh = w_hh.contiguous();
  const Tensor Whr = s.proj ? w_hr->contiguous() : Tensor();
  const bool has_dy = driver::defined(grad_output);
  // grad_output as (N, Hr) rows, dy_ld apart. A gradient that is one row broadcast over all rows
  // (the gradient of out.sum() or out.mean()) stays that row, expanded (dy_ld 0), not copied out.
  const Tensor dY = !has_dy ? Tensor()
                    : driver::rows_broadcast(*grad_output)
                        ? grad_output->as_strided({s.Hr}, {grad_output->stride(-1)}).contiguous().expand({s.N, s.Hr})
                        : driver::contiguous<Backend>(*grad_output).view({s.N, s.Hr});
  const int64_t dy_ld = has_dy ? dY.stride(0) : s.Hr;

  Tensor dh = driver::defined(grad_hy) ? grad_hy->contiguous().clone() : at::zeros({s.B, s.Hr}, opts);
  Tensor dc;
  if (lstm) {
    dc = driver::defined(grad_cy) ? grad_cy->to(acc_type).contiguous().clone()
                                  : at::zeros({s.B, s.H}, opts.dtype(acc_type));
  }
  Tensor dg_x = Backend::empty({s.N, GH}, opts);
  Tensor dg_h = gru ? Backend::empty({s.N, GH}, opts) : dg_x;
  Tensor dh_proj = s.proj ? Backend::empty({s.N, s.Hr}, opts) : Tensor();  // dh before W_hr, per row
  Tensor dh_raw = s.proj ? at::empty({s.B, s.H}, opts) : Tensor();
  // The state before each step, per row: dense layers read it in place (hx, or the output rows of
  // the step before), packed ones gather it, as a step's rows may come from both.
  const Tensor H0 = hx.contiguous();
  const Tensor h_prev = s.packed ? driver::gather_prev_states<Backend>(s, reverse, Y, H0) : Tensor();
  const Tensor c_prev = lstm ? driver::gather_prev_states<Backend>(s, reverse, R.narrow(1, 4 * s.H, s.H),
                                                          cx->to(acc_type).contiguous())
                             : Tensor();

  Backend::dispatch(input.scalar_type(), [&](auto zero) {
    using scalar_t = decltype(zero);
    using acc_t = at::opmath_type<scalar_t>;
    const BackwardCall<scalar_t, acc_t> call{&s,
                                             reverse,
                                             RW ? R.data_ptr<acc_t>() : nullptr,
                                             Y.data_ptr<scalar_t>(),
                                             H0.data_ptr<scalar_t>(),
                                             s.packed ? h_prev.data_ptr<scalar_t>() : nullptr,
                                             lstm ? c_prev.data_ptr<acc_t>() : nullptr,
                                             has_dy ? dY.data_ptr<scalar_t>() : nullptr,
                                             dy_ld,
                                             dh.data_ptr<scalar_t>(),
                                             lstm ? dc.data_ptr<acc_t>() : nullptr,
                                             dg_x.data_ptr<scalar_t>(),
                                             dg_h.data_ptr<scalar_t>()};
    // A backend may run the step loop itself (the CPU's unit split, CUDA's persistent kernels).
    if constexpr (Backend::kOwnStepLoops) {
      if (Backend::own_backward_loop(call, Whh)) return;
    }
    using StepWeight = typename Backend::template StepWeight<scalar_t>;
    const StepWeight whh(s, Whh, false);
    const StepWeight whr = s.proj ? StepWeight(s, Whr, false) : StepWeight();
    driver::for_row_blocks<Backend>(s, [&](int64_t r0, int64_t r1) {
      for (int64_t step = 0; step < s.T; ++step) {
        const int64_t t = reverse ? step : s.T - 1 - step;  // forward's processing order, reversed
        const int64_t b = std::min(s.batch_sizes[t], r1) - r0, off = s.offsets[t] + r0;
        if (b <= 0) continue;
        BackwardStep<scalar_t, acc_t> p = call.step(t, r0);
        scalar_t* dh_b = p.dh;
        if (s.proj) {
          // h = h_raw @ W_hr^T: the pointwise pass needs the gradient of h_raw.
          Tensor dh_rows = dh.narrow(0, r0, b);
          if (has_dy) dh_rows.add_(dY.narrow(0, off, b));
          dh_proj.narrow(0, off, b).copy_(dh_rows);
          scalar_t* dh_raw_b = dh_raw.data_ptr<scalar_t>() + r0 * s.H;
          Backend::gemm(b, s.H, s.Hr, dh_b, whr, scalar_t(0), dh_raw_b, opts);
          p.dh = dh_raw_b;
          p.dy = nullptr;
        }
        Backend::backward_pointwise(s, b, p);
        // dh_prev = dG_h @ W_hh; GRU adds it to the direct part dh * z left by the pointwise pass.
        Backend::gemm(b, s.Hr, GH, p.dg_h, whh, scalar_t(gru ? 1 : 0), dh_b, opts);
      }
    });
  });

  // Absent gradients are distinct empty tensors: outputs of an op must not alias each other.
  auto none = [&] { return driver::empty_like_none(input); };
  Tensor grad_input = need_input_grad ? Backend::input_grad(dg_x, Wih).view(input.sizes()) : none();
  Tensor gw_ih = none(), gw_hh = none(), gb_ih = none(), gb_hh = none(), gw_hr = none();
  bool weight_grads_done = false;
  if constexpr (Backend::kWeightGrad) {
    if (need_weight_grads) weight_grads_done = Backend::weight_grads(s, reverse, X, Y, H0, h_prev, dg_x, dg_h,
                                                                   driver::defined(b_ih), driver::defined(b_hh),
                                                                   gw_ih, gw_hh, gb_ih, gb_hh);
  }
  if (need_weight_grads && !weight_grads_done) {
    gw_ih = at::mm(dg_x.t(), X);
    if (s.packed) {
      gw_hh = at::mm(dg_h.t(), h_prev);
    } else {  // T > 0 (checked)
      // Rows of the first step met hx; every other step's rows the output of the step before.
      const driver::DensePrevRows d = driver::dense_prev_rows(s, reverse);
      gw_hh = at::mm(dg_h.narrow(0, d.first, s.B).t(), H0);
      if (d.rest > 0) gw_hh.addmm_(dg_h.narrow(0, d.later, d.rest).t(), Y.narrow(0, d.prev, d.rest));
    }
    if (driver::defined(b_ih)) gb_ih = dg_x.sum(0);
    if (driver::defined(b_hh)) {
      // LSTM and RNN: the same gate gradients on both sides, summed once.
      gb_hh = dg_h.is_same(dg_x) && driver::defined(b_ih) ? gb_ih.clone() : dg_h.sum(0);
    }
  }
  if (need_weight_grads && s.proj) gw_hr = at::mm(dh_proj.t(), R.narrow(1, 5 * s.H, s.H).to(input.scalar_type()));
  Tensor grad_cx = lstm ? dc.to(input.scalar_type()) : none();
  return {grad_input, dh, grad_cx, gw_ih, gw_hh, gb_ih, gb_hh, gw_hr};
}

}  // namespace fusedrnn
