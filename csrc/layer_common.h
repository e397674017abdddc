// Argument checks and shape bookkeeping shared by the CPU and CUDA layer ops (host code only).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <string>
#include <vector>

#include "cell_math.h"

namespace fusedrnn {

using at::Tensor;
using cell::CellType;

// One direction of one layer over a sequence, in the packed layout: step t covers rows
// [offsets[t], offsets[t] + batch_sizes[t]) of the (N, *) row matrices. Dense input (T, B, *)
// is the same layout with batch_sizes[t] = B for every t.
struct LayerShape {
  CellType cell;
  int64_t G;   // gates
  int64_t T;   // steps
  int64_t B;   // batch (rows of hx)
  int64_t N;   // rows of input/output = sum(batch_sizes)
  int64_t I;   // input features
  int64_t H;   // hidden size (gate width, cell state)
  int64_t Hr;  // recurrent/output width: proj_size if projections, else H
  bool proj;
  bool packed;
  std::vector<int64_t> batch_sizes;
  std::vector<int64_t> offsets;
  // Per-row width of the reserve saved for backward: LSTM [i f g o | c | h_raw if proj];
  // GRU [r z n | W_hn h + b_hn]; RNN none (its output is enough).
  int64_t reserve_width() const {
    switch (cell) {
      case CellType::LSTM: return 5 * H + (proj ? H : 0);
      case CellType::GRU: return 4 * H;
      default: return 0;
    }
  }
};

inline CellType parse_cell(c10::string_view name) {
  if (name == "rnn_tanh") return CellType::RNN_TANH;
  if (name == "rnn_relu") return CellType::RNN_RELU;
  if (name == "lstm") return CellType::LSTM;
  if (name == "gru") return CellType::GRU;
  TORCH_CHECK(false, "fusedrnn: unknown cell '", std::string(name.data(), name.size()),
              "'; expected one of rnn_tanh, rnn_relu, lstm, gru");
}

inline void check_same(const Tensor& ref, const Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "fusedrnn: ", name, " has dtype ",
              t.scalar_type(), " but input has dtype ", ref.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), "fusedrnn: ", name, " is on ", t.device(),
              " but input is on ", ref.device());
}

inline LayerShape check_layer_args(c10::string_view cell_name, const Tensor& input,
                                   const c10::optional<Tensor>& batch_sizes, const Tensor& hx,
                                   const c10::optional<Tensor>& cx, const Tensor& w_ih,
                                   const Tensor& w_hh, const c10::optional<Tensor>& b_ih,
                                   const c10::optional<Tensor>& b_hh,
                                   const c10::optional<Tensor>& w_hr) {
  LayerShape s;
  s.cell = parse_cell(cell_name);
  s.G = cell::num_gates(s.cell);
  s.packed = batch_sizes.has_value() && batch_sizes->defined();
  const bool lstm = s.cell == CellType::LSTM;

  TORCH_CHECK(w_ih.dim() == 2 && w_hh.dim() == 2, "fusedrnn: w_ih and w_hh must be 2-D, got ",
              w_ih.dim(), "-D and ", w_hh.dim(), "-D");
  TORCH_CHECK(w_hh.size(0) % s.G == 0 && w_hh.size(0) > 0, "fusedrnn: w_hh has ", w_hh.size(0),
              " rows, not a positive multiple of the ", s.G, " gates of ", std::string(cell_name));
  s.H = w_hh.size(0) / s.G;
  s.Hr = w_hh.size(1);
  s.I = w_ih.size(1);
  TORCH_CHECK(w_ih.size(0) == s.G * s.H, "fusedrnn: w_ih has ", w_ih.size(0),
              " rows but w_hh has ", s.G * s.H);

  s.proj = w_hr.has_value() && w_hr->defined();
  if (s.proj) {
    TORCH_CHECK(lstm, "fusedrnn: projections (w_hr) are only supported for lstm");
    TORCH_CHECK(w_hr->dim() == 2 && w_hr->size(1) == s.H && w_hr->size(0) == s.Hr,
                "fusedrnn: w_hr must have shape (", s.Hr, ", ", s.H, "), got ", w_hr->sizes());
    check_same(input, *w_hr, "w_hr");
  } else {
    TORCH_CHECK(s.Hr == s.H, "fusedrnn: w_hh must have shape (", s.G * s.H, ", ", s.H,
                "), got ", w_hh.sizes());
  }
  for (const auto* b : {&b_ih, &b_hh}) {
    if (b->has_value() && (*b)->defined()) {
      TORCH_CHECK((*b)->dim() == 1 && (*b)->size(0) == s.G * s.H, "fusedrnn: biases must have shape (",
                  s.G * s.H, "), got ", (*b)->sizes());
      check_same(input, **b, "bias");
    }
  }
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), "fusedrnn: input must be floating point, got ",
              input.scalar_type());
  check_same(input, w_ih, "w_ih");
  check_same(input, w_hh, "w_hh");
  check_same(input, hx, "hx");

  TORCH_CHECK(hx.dim() == 2 && hx.size(1) == s.Hr, "fusedrnn: hx must have shape (batch, ", s.Hr,
              "), got ", hx.sizes());
  s.B = hx.size(0);
  if (lstm) {
    TORCH_CHECK(cx.has_value() && cx->defined(), "fusedrnn: lstm needs cx");
    check_same(input, *cx, "cx");
    TORCH_CHECK(cx->dim() == 2 && cx->size(0) == s.B && cx->size(1) == s.H,
                "fusedrnn: cx must have shape (", s.B, ", ", s.H, "), got ", cx->sizes());
  }

  if (s.packed) {
    const Tensor& bs = *batch_sizes;
    TORCH_CHECK(bs.device().is_cpu() && bs.scalar_type() == at::kLong && bs.dim() == 1,
                "fusedrnn: batch_sizes must be a 1-D CPU int64 tensor, got ", bs.scalar_type(),
                " on ", bs.device(), " with shape ", bs.sizes());
    TORCH_CHECK(input.dim() == 2, "fusedrnn: packed input must be 2-D (rows, features), got ",
                input.dim(), "-D");
    s.T = bs.size(0);
    TORCH_CHECK(s.T > 0, "fusedrnn: batch_sizes is empty");
    const Tensor bsc = bs.contiguous();
    const int64_t* p = bsc.data_ptr<int64_t>();
    s.batch_sizes.assign(p, p + s.T);
    int64_t total = 0;
    for (int64_t t = 0; t < s.T; ++t) {
      TORCH_CHECK(s.batch_sizes[t] > 0, "fusedrnn: batch_sizes[", t, "] = ", s.batch_sizes[t],
                  " must be positive");
      TORCH_CHECK(t == 0 || s.batch_sizes[t] <= s.batch_sizes[t - 1],
                  "fusedrnn: batch_sizes must be non-increasing (sequences sorted by length), but "
                  "batch_sizes[", t, "] = ", s.batch_sizes[t], " > batch_sizes[", t - 1, "] = ",
                  s.batch_sizes[t - 1]);
      s.offsets.push_back(total);
      total += s.batch_sizes[t];
    }
    TORCH_CHECK(total == input.size(0), "fusedrnn: packed input has ", input.size(0),
                " rows but batch_sizes sum to ", total);
    TORCH_CHECK(s.batch_sizes[0] == s.B, "fusedrnn: hx has batch ", s.B,
                " but the packed batch (batch_sizes[0]) is ", s.batch_sizes[0]);
    s.N = total;
  } else {
    TORCH_CHECK(input.dim() == 3, "fusedrnn: dense input must be 3-D (seq_len, batch, features), got ",
                input.dim(), "-D");
    s.T = input.size(0);
    TORCH_CHECK(s.T > 0, "fusedrnn: sequence length must be larger than 0");
    TORCH_CHECK(input.size(1) == s.B, "fusedrnn: input has batch ", input.size(1), " but hx has batch ",
                s.B);
    s.batch_sizes.assign(s.T, s.B);
    for (int64_t t = 0; t < s.T; ++t) s.offsets.push_back(t * s.B);
    s.N = s.T * s.B;
  }
  TORCH_CHECK(input.size(-1) == s.I, "fusedrnn: input has ", input.size(-1),
              " features but w_ih expects ", s.I);
  return s;
}

// Shape of the output for a given input: (T, B, Hr) dense or (N, Hr) packed.
inline std::vector<int64_t> output_sizes(const Tensor& input, int64_t Hr) {
  std::vector<int64_t> sizes(input.sizes().begin(), input.sizes().end());
  sizes.back() = Hr;
  return sizes;
}

}  // namespace fusedrnn
