// The schemas of the layer ops, declared once: by fusedrnn (csrc/ops.cpp) and by the emulated CUDA
// backend's library fusedrnn_emu (csrc/emu/module.cpp), which registers the same ops for CPU tensors.
#pragma once

#include <torch/library.h>

namespace fusedrnn {

inline void define_layer_ops(torch::Library& m) {
  // One direction of one recurrent layer over a whole sequence.
  //   cell: rnn_tanh | rnn_relu | lstm | gru
  //   input: (T, B, I) dense, or (N, I) packed rows with batch_sizes (T,) CPU int64, non-increasing
  //   hx: (B, Hr) initial state; cx: (B, H), lstm only
  //   w_ih: (G*H, I); w_hh: (G*H, Hr); b_ih, b_hh: (G*H); w_hr: (Hr, H), lstm projections only
  //   reverse: walk the steps from the end (each sequence from its own last step)
  //   train: fill `reserve` with what layer_backward needs; otherwise it is empty
  // Returns output (T, B, Hr) or (N, Hr); hy (B, Hr), each row's state at its own last step;
  // cy (B, H) for lstm, else empty; reserve.
  m.def(
      "layer_forward(str cell, Tensor input, Tensor? batch_sizes, Tensor hx, Tensor? cx, "
      "Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? w_hr, bool reverse, bool train) "
      "-> (Tensor output, Tensor hy, Tensor cy, Tensor reserve)");
  // Gradients of layer_forward. Missing biases / projections / cell state give empty tensors;
  // so do the input gradient and the weight gradients when not asked for.
  m.def(
      "layer_backward(str cell, Tensor input, Tensor? batch_sizes, Tensor hx, Tensor? cx, "
      "Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? w_hr, bool reverse, "
      "Tensor output, Tensor reserve, Tensor? grad_output, Tensor? grad_hy, Tensor? grad_cy, "
      "bool need_input_grad, bool need_weight_grads) "
      "-> (Tensor grad_input, Tensor grad_hx, Tensor grad_cx, Tensor grad_w_ih, Tensor grad_w_hh, "
      "Tensor grad_b_ih, Tensor grad_b_hh, Tensor grad_w_hr)");
}

}  // namespace fusedrnn
