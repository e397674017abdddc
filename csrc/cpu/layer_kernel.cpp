// CPU implementation of the layer ops: one direction of one layer over a whole sequence.
//
// Forward: XW = X @ W_ih^T + b_ih for all rows at once; then per step t (rows [off, off + b)):
//   HW = h[:b] @ W_hh^T (one GEMM), then one fused, vectorized pointwise pass that adds b_hh,
//   applies the cell (cell_math.h), updates the state in place and writes the output rows and,
//   in training, the reserve the backward needs.
// Backward: the steps in reverse, one fused pointwise pass for the gate gradients and one GEMM
//   dh_prev = dG @ W_hh per step; then whole-sequence GEMMs for dX, dW_ih, dW_hh, dW_hr and sums
//   for the biases. No atomics: results are deterministic.
#include "vec_math.h"  // before cell_math.h, see there
#include "../cell_math.h"
#include "../layer_common.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>

namespace fusedrnn {
namespace {

using c10::optional;

template <typename scalar_t>
using Vec = at::vec::Vectorized<scalar_t>;

template <typename scalar_t>
inline Vec<scalar_t> load(const scalar_t* p, int64_t n) {
  return n == Vec<scalar_t>::size() ? Vec<scalar_t>::loadu(p) : Vec<scalar_t>::loadu(p, n);
}
template <typename scalar_t>
inline void store(const Vec<scalar_t>& v, scalar_t* p, int64_t n) {
  if (n == Vec<scalar_t>::size()) {
    v.store(p);
  } else {
    v.store(p, n);
  }
}

// Calls f(j, n) over [0, width) in chunks of one SIMD vector (n lanes; the last may be short).
template <typename scalar_t, typename F>
inline void for_each_chunk(int64_t width, const F& f) {
  constexpr int64_t V = Vec<scalar_t>::size();
  int64_t j = 0;
  for (; j + V <= width; j += V) f(j, V);
  if (j < width) f(j, width - j);
}

// Runs f(r) for rows [0, rows), in parallel when the step is big enough to pay for it.
template <typename F>
inline void for_each_row(int64_t rows, int64_t row_elems, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, row_elems));
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) f(r);
  });
}

// Raw pointers of one forward step. Row r of the step is row (off + r) of xw / out / reserve
// and row r of the state buffers.
template <typename scalar_t>
struct ForwardStep {
  const scalar_t* xw;  // [b, G*H] input projection rows (b_ih included)
  const scalar_t* hw;  // [b, G*H] h_prev @ W_hh^T
  const scalar_t* bhh; // [G*H] (zeros when there is no bias)
  scalar_t* h;         // [b, Hr] state: h_prev in, h out (unused with projections)
  scalar_t* c;         // [b, H] LSTM cell state: c_prev in, c out
  scalar_t* out;       // [b, Hr] output rows (unused with projections)
  scalar_t* h_raw;     // [b, H] LSTM pre-projection h (projections only)
  scalar_t* reserve;   // [b, reserve_width] or nullptr when not training
};

template <typename scalar_t>
void forward_pointwise(const LayerShape& s, int64_t b, const ForwardStep<scalar_t>& p) {
  using V = Vec<scalar_t>;
  const int64_t H = s.H, GH = s.G * s.H, Hr = s.Hr, RW = s.reserve_width();
  switch (s.cell) {
    case CellType::LSTM:
      for_each_row(b, GH, [&](int64_t r) {
        const scalar_t* xw = p.xw + r * GH;
        const scalar_t* hw = p.hw + r * GH;
        scalar_t* c = p.c + r * H;
        scalar_t* res = p.reserve ? p.reserve + r * RW : nullptr;
        for_each_chunk<scalar_t>(H, [&](int64_t j, int64_t n) {
          V pre[4];
          for (int k = 0; k < 4; ++k) {
            const int64_t o = k * H + j;
            pre[k] = load(xw + o, n) + load(hw + o, n) + load(p.bhh + o, n);
          }
          V i, f, g, o, cn, hn;
          cell::lstm_forward(pre[0], pre[1], pre[2], pre[3], load(c + j, n), i, f, g, o, cn, hn);
          store(cn, c + j, n);
          if (s.proj) {
            store(hn, p.h_raw + r * H + j, n);
          } else {
            store(hn, p.out + r * Hr + j, n);
            store(hn, p.h + r * Hr + j, n);
          }
          if (res) {
            store(i, res + j, n);
            store(f, res + H + j, n);
            store(g, res + 2 * H + j, n);
            store(o, res + 3 * H + j, n);
            store(cn, res + 4 * H + j, n);
            if (s.proj) store(hn, res + 5 * H + j, n);
          }
        });
      });
      break;
    case CellType::GRU:
      for_each_row(b, GH, [&](int64_t r) {
        const scalar_t* xw = p.xw + r * GH;
        const scalar_t* hw = p.hw + r * GH;
        scalar_t* h = p.h + r * H;
        scalar_t* res = p.reserve ? p.reserve + r * RW : nullptr;
        for_each_chunk<scalar_t>(H, [&](int64_t j, int64_t n) {
          const V pre_r = load(xw + j, n) + load(hw + j, n) + load(p.bhh + j, n);
          const V pre_z = load(xw + H + j, n) + load(hw + H + j, n) + load(p.bhh + H + j, n);
          const V x_n = load(xw + 2 * H + j, n);
          const V h_n = load(hw + 2 * H + j, n) + load(p.bhh + 2 * H + j, n);
          V rg, zg, ng, hn;
          cell::gru_forward(pre_r, pre_z, x_n, h_n, load(h + j, n), rg, zg, ng, hn);
          store(hn, h + j, n);
          store(hn, p.out + r * H + j, n);
          if (res) {
            store(rg, res + j, n);
            store(zg, res + H + j, n);
            store(ng, res + 2 * H + j, n);
            store(h_n, res + 3 * H + j, n);
          }
        });
      });
      break;
    case CellType::RNN_TANH:
    case CellType::RNN_RELU: {
      const bool relu = s.cell == CellType::RNN_RELU;
      for_each_row(b, H, [&](int64_t r) {
        const scalar_t* xw = p.xw + r * H;
        const scalar_t* hw = p.hw + r * H;
        for_each_chunk<scalar_t>(H, [&](int64_t j, int64_t n) {
          const V pre = load(xw + j, n) + load(hw + j, n) + load(p.bhh + j, n);
          const V hn = relu ? cell::rnn_relu_forward(pre) : cell::rnn_tanh_forward(pre);
          store(hn, p.h + r * H + j, n);
          store(hn, p.out + r * H + j, n);
        });
      });
      break;
    }
  }
}

// Raw pointers of one backward step; rows as in ForwardStep.
template <typename scalar_t>
struct BackwardStep {
  const scalar_t* reserve;  // [b, reserve_width]
  const scalar_t* out;      // [b, H] output rows (RNN: h_t)
  const scalar_t* h_prev;   // [b, H] GRU: state before the step
  const scalar_t* c_prev;   // [b, H] LSTM: cell state before the step
  const scalar_t* dy;       // [b, Hr] grad_output rows, or nullptr (already added to dh)
  scalar_t* dh;             // [b, *] gradient reaching h_t (LSTM with projections: h_raw);
                            // GRU: overwritten with the direct part of dh_prev (dh * z)
  scalar_t* dc;             // [b, H] LSTM: dc_t in, dc_{t-1} out
  scalar_t* dg_x;           // [b, G*H] pre-activation gate gradients (input side)
  scalar_t* dg_h;           // [b, G*H] GRU: gate gradients on the recurrent side
};

template <typename scalar_t>
void backward_pointwise(const LayerShape& s, int64_t b, const BackwardStep<scalar_t>& p) {
  using V = Vec<scalar_t>;
  const int64_t H = s.H, GH = s.G * s.H, RW = s.reserve_width();
  // Gradient reaching h: dh plus this step's grad_output, when there is one.
  auto dh_at = [&](int64_t r, int64_t j, int64_t n) {
    V d = load(p.dh + r * H + j, n);
    return p.dy ? d + load(p.dy + r * H + j, n) : d;
  };
  switch (s.cell) {
    case CellType::LSTM:
      for_each_row(b, GH, [&](int64_t r) {
        const scalar_t* res = p.reserve + r * RW;
        scalar_t* dg = p.dg_x + r * GH;
        for_each_chunk<scalar_t>(H, [&](int64_t j, int64_t n) {
          V di, df, dgg, dout, dcp;
          cell::lstm_backward(load(res + j, n), load(res + H + j, n), load(res + 2 * H + j, n),
                              load(res + 3 * H + j, n), load(res + 4 * H + j, n),
                              load(p.c_prev + r * H + j, n), dh_at(r, j, n),
                              load(p.dc + r * H + j, n), di, df, dgg, dout, dcp);
          store(di, dg + j, n);
          store(df, dg + H + j, n);
          store(dgg, dg + 2 * H + j, n);
          store(dout, dg + 3 * H + j, n);
          store(dcp, p.dc + r * H + j, n);
        });
      });
      break;
    case CellType::GRU:
      for_each_row(b, GH, [&](int64_t r) {
        const scalar_t* res = p.reserve + r * RW;
        scalar_t* dgx = p.dg_x + r * GH;
        scalar_t* dgh = p.dg_h + r * GH;
        for_each_chunk<scalar_t>(H, [&](int64_t j, int64_t n) {
          V dr, dz, dxn, dhn, dhp;
          cell::gru_backward(load(res + j, n), load(res + H + j, n), load(res + 2 * H + j, n),
                             load(res + 3 * H + j, n), load(p.h_prev + r * H + j, n),
                             dh_at(r, j, n), dr, dz, dxn, dhn, dhp);
          store(dr, dgx + j, n);
          store(dz, dgx + H + j, n);
          store(dxn, dgx + 2 * H + j, n);
          store(dr, dgh + j, n);
          store(dz, dgh + H + j, n);
          store(dhn, dgh + 2 * H + j, n);
          store(dhp, p.dh + r * H + j, n);
        });
      });
      break;
    case CellType::RNN_TANH:
    case CellType::RNN_RELU: {
      const bool relu = s.cell == CellType::RNN_RELU;
      for_each_row(b, H, [&](int64_t r) {
        for_each_chunk<scalar_t>(H, [&](int64_t j, int64_t n) {
          const V h = load(p.out + r * H + j, n);
          const V d = dh_at(r, j, n);
          store(relu ? cell::rnn_relu_backward(h, d) : cell::rnn_tanh_backward(h, d),
                p.dg_x + r * H + j, n);
        });
      });
      break;
    }
  }
}

// The state each row had before each step, as an (N, width) matrix: h_prev / c_prev of row
// (off[t] + r) is row r of `init` at the sequence's first step, otherwise the row of `seq` written
// by the previous step. `seq` rows are `seq_stride` apart (a column block of the reserve).
template <typename scalar_t>
Tensor gather_prev_states(const LayerShape& s, bool reverse, const scalar_t* seq, int64_t seq_stride,
                          const Tensor& init, int64_t width) {
  Tensor prev = at::empty({s.N, width}, init.options());
  scalar_t* dst = prev.data_ptr<scalar_t>();
  const scalar_t* h0 = init.data_ptr<scalar_t>();
  const size_t bytes = width * sizeof(scalar_t);
  at::parallel_for(0, s.T, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = s.batch_sizes[t], off = s.offsets[t];
      // Previous step in processing order and how many of this step's rows it covered.
      const int64_t tp = reverse ? t + 1 : t - 1;
      const bool has_prev = reverse ? t + 1 < s.T : t > 0;
      const int64_t from_seq = has_prev ? std::min(b, s.batch_sizes[tp]) : 0;
      for (int64_t r = 0; r < b; ++r) {
        const scalar_t* src = r < from_seq ? seq + (s.offsets[tp] + r) * seq_stride : h0 + r * width;
        std::memcpy(dst + (off + r) * width, src, bytes);
      }
    }
  });
  return prev;
}

Tensor empty_like_none(const Tensor& ref) { return at::empty({0}, ref.options()); }

std::tuple<Tensor, Tensor, Tensor, Tensor> layer_forward_cpu(
    c10::string_view cell_name, const Tensor& input, const optional<Tensor>& batch_sizes,
    const Tensor& hx, const optional<Tensor>& cx, const Tensor& w_ih, const Tensor& w_hh,
    const optional<Tensor>& b_ih, const optional<Tensor>& b_hh, const optional<Tensor>& w_hr,
    bool reverse, bool train) {
  const LayerShape s = check_layer_args(cell_name, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr);
  TORCH_CHECK(input.device().is_cpu(), "fusedrnn: the CPU kernel got a tensor on ", input.device());
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble,
              "fusedrnn: the CPU kernels support float32 and float64, got ", input.scalar_type());
  const bool lstm = s.cell == CellType::LSTM;
  const int64_t GH = s.G * s.H;
  const auto opts = input.options();

  const Tensor X = input.contiguous().view({s.N, s.I});
  const Tensor Wih = w_ih.contiguous(), Whh = w_hh.contiguous();
  const Tensor bhh = (b_hh && b_hh->defined()) ? b_hh->contiguous() : at::zeros({GH}, opts);

  Tensor xw = at::empty({s.N, GH}, opts);
  if (b_ih && b_ih->defined()) {
    at::addmm_out(xw, *b_ih, X, Wih.t());
  } else {
    at::mm_out(xw, X, Wih.t());
  }
  Tensor out = at::empty({s.N, s.Hr}, opts);
  Tensor hy = hx.contiguous().clone();  // state buffer; holds h_n at the end
  Tensor cy = lstm ? cx->contiguous().clone() : empty_like_none(input);
  Tensor reserve = at::empty({train ? s.N : 0, s.reserve_width()}, opts);
  Tensor hw = at::empty({s.B, GH}, opts);
  Tensor h_raw = s.proj ? at::empty({s.B, s.H}, opts) : Tensor();
  const Tensor Whr = s.proj ? w_hr->contiguous() : Tensor();

  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "fusedrnn_layer_forward_cpu", [&] {
    for (int64_t step = 0; step < s.T; ++step) {
      const int64_t t = reverse ? s.T - 1 - step : step;
      const int64_t b = s.batch_sizes[t], off = s.offsets[t];
      if (b == 0) continue;
      Tensor hw_b = hw.narrow(0, 0, b);
      at::mm_out(hw_b, hy.narrow(0, 0, b), Whh.t());
      ForwardStep<scalar_t> p;
      p.xw = xw.data_ptr<scalar_t>() + off * GH;
      p.hw = hw.data_ptr<scalar_t>();
      p.bhh = bhh.data_ptr<scalar_t>();
      p.h = hy.data_ptr<scalar_t>();
      p.c = lstm ? cy.data_ptr<scalar_t>() : nullptr;
      p.out = out.data_ptr<scalar_t>() + off * s.Hr;
      p.h_raw = s.proj ? h_raw.data_ptr<scalar_t>() : nullptr;
      p.reserve = train && s.reserve_width() > 0 ? reserve.data_ptr<scalar_t>() + off * s.reserve_width() : nullptr;
      forward_pointwise<scalar_t>(s, b, p);
      if (s.proj) {
        Tensor out_b = out.narrow(0, off, b);
        at::mm_out(out_b, h_raw.narrow(0, 0, b), Whr.t());
        hy.narrow(0, 0, b).copy_(out_b);
      }
    }
  });
  return {out.view(output_sizes(input, s.Hr)), hy, cy, reserve};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> layer_backward_cpu(
    c10::string_view cell_name, const Tensor& input, const optional<Tensor>& batch_sizes,
    const Tensor& hx, const optional<Tensor>& cx, const Tensor& w_ih, const Tensor& w_hh,
    const optional<Tensor>& b_ih, const optional<Tensor>& b_hh, const optional<Tensor>& w_hr,
    bool reverse, const Tensor& output, const Tensor& reserve, const optional<Tensor>& grad_output,
    const optional<Tensor>& grad_hy, const optional<Tensor>& grad_cy, bool need_input_grad,
    bool need_weight_grads) {
  const LayerShape s = check_layer_args(cell_name, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr);
  TORCH_CHECK(input.device().is_cpu(), "fusedrnn: the CPU kernel got a tensor on ", input.device());
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble,
              "fusedrnn: the CPU kernels support float32 and float64, got ", input.scalar_type());
  const bool lstm = s.cell == CellType::LSTM, gru = s.cell == CellType::GRU;
  const int64_t GH = s.G * s.H, RW = s.reserve_width();
  const auto opts = input.options();
  TORCH_CHECK(output.numel() == s.N * s.Hr, "fusedrnn: output has ", output.numel(),
              " elements, expected ", s.N * s.Hr);
  TORCH_CHECK(RW == 0 || (reserve.dim() == 2 && reserve.size(0) == s.N && reserve.size(1) == RW),
              "fusedrnn: backward needs the reserve of a forward run with train=True (expected shape (",
              s.N, ", ", RW, "), got ", reserve.sizes(), ")");

  const Tensor X = input.contiguous().view({s.N, s.I});
  const Tensor Y = output.contiguous().view({s.N, s.Hr});
  const Tensor R = reserve.contiguous();
  const Tensor Wih = w_ih.contiguous(), Whh = w_hh.contiguous();
  const Tensor Whr = s.proj ? w_hr->contiguous() : Tensor();
  const Tensor h0 = hx.contiguous();
  const bool has_dy = grad_output && grad_output->defined();
  const Tensor dY = has_dy ? grad_output->contiguous().view({s.N, s.Hr}) : Tensor();

  Tensor dh = (grad_hy && grad_hy->defined()) ? grad_hy->contiguous().clone() : at::zeros({s.B, s.Hr}, opts);
  Tensor dc;
  if (lstm) dc = (grad_cy && grad_cy->defined()) ? grad_cy->contiguous().clone() : at::zeros({s.B, s.H}, opts);
  Tensor dg_x = at::empty({s.N, GH}, opts);
  Tensor dg_h = gru ? at::empty({s.N, GH}, opts) : dg_x;
  Tensor dh_proj = s.proj ? at::empty({s.N, s.Hr}, opts) : Tensor();  // dh before W_hr, per row
  Tensor dh_raw = s.proj ? at::empty({s.B, s.H}, opts) : Tensor();
  Tensor h_prev, c_prev;

  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "fusedrnn_layer_backward_cpu", [&] {
    h_prev = gather_prev_states<scalar_t>(s, reverse, Y.data_ptr<scalar_t>(), s.Hr, h0, s.Hr);
    if (lstm) {
      c_prev = gather_prev_states<scalar_t>(s, reverse, R.data_ptr<scalar_t>() + 4 * s.H, RW,
                                            cx->contiguous(), s.H);
    }
    for (int64_t step = 0; step < s.T; ++step) {
      const int64_t t = reverse ? step : s.T - 1 - step;  // forward's processing order, reversed
      const int64_t b = s.batch_sizes[t], off = s.offsets[t];
      if (b == 0) continue;
      Tensor dh_b = dh.narrow(0, 0, b);
      BackwardStep<scalar_t> p;
      p.reserve = RW ? R.data_ptr<scalar_t>() + off * RW : nullptr;
      p.out = Y.data_ptr<scalar_t>() + off * s.Hr;
      p.h_prev = h_prev.data_ptr<scalar_t>() + off * s.Hr;
      p.c_prev = lstm ? c_prev.data_ptr<scalar_t>() + off * s.H : nullptr;
      p.dy = has_dy ? dY.data_ptr<scalar_t>() + off * s.Hr : nullptr;
      p.dh = dh.data_ptr<scalar_t>();
      p.dc = lstm ? dc.data_ptr<scalar_t>() : nullptr;
      p.dg_x = dg_x.data_ptr<scalar_t>() + off * GH;
      p.dg_h = dg_h.data_ptr<scalar_t>() + off * GH;
      if (s.proj) {
        // h = h_raw @ W_hr^T: the pointwise pass needs the gradient of h_raw.
        if (has_dy) dh_b.add_(dY.narrow(0, off, b));
        dh_proj.narrow(0, off, b).copy_(dh_b);
        Tensor dh_raw_b = dh_raw.narrow(0, 0, b);
        at::mm_out(dh_raw_b, dh_b, Whr);
        p.dh = dh_raw.data_ptr<scalar_t>();
        p.dy = nullptr;
      }
      backward_pointwise<scalar_t>(s, b, p);
      if (gru) {
        dh_b.addmm_(dg_h.narrow(0, off, b), Whh);  // dh holds dh * z from the pointwise pass
      } else {
        at::mm_out(dh_b, dg_x.narrow(0, off, b), Whh);
      }
    }
  });

  Tensor grad_input = need_input_grad ? at::mm(dg_x, Wih).view(input.sizes()) : empty_like_none(input);
  Tensor gw_ih, gw_hh, gb_ih, gb_hh, gw_hr;
  const bool has_b_ih = b_ih && b_ih->defined(), has_b_hh = b_hh && b_hh->defined();
  if (need_weight_grads) {
    gw_ih = at::mm(dg_x.t(), X);
    gw_hh = at::mm(dg_h.t(), h_prev);
    gb_ih = has_b_ih ? dg_x.sum(0) : empty_like_none(input);
    gb_hh = has_b_hh ? dg_h.sum(0) : empty_like_none(input);
    gw_hr = s.proj ? at::mm(dh_proj.t(), R.narrow(1, 5 * s.H, s.H)) : empty_like_none(input);
  } else {
    gw_ih = gw_hh = gb_ih = gb_hh = gw_hr = empty_like_none(input);
  }
  Tensor grad_cx = lstm ? dc : empty_like_none(input);
  return {grad_input, dh, grad_cx, gw_ih, gw_hh, gb_ih, gb_hh, gw_hr};
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
  m.impl("layer_forward", &layer_forward_cpu);
  m.impl("layer_backward", &layer_backward_cpu);
}

}  // namespace fusedrnn
