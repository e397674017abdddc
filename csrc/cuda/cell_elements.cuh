// One element (row r of a step, hidden unit j) of the CUDA backend's pointwise passes, for both of
// its paths: the standard kernels call these once per thread, the persistent kernels for the units
// of their slice. Forward: hw(o) gives the recurrent product h_prev @ W_hh^T of row r at gate column
// o (b_hh not in it; the standard path reads it from memory, the persistent one from shared
// memory). Storage scalar_t, math acc_t; gate order and formulas are cell_math.h's.
#pragma once

#include "../cell_math.h"
#include "../layer_driver.h"

namespace fusedrnn {
namespace {

// Input part (with b_ih) and recurrent part (with b_hh) of gate column o of row r.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t input_part(const ForwardStep<scalar_t, acc_t>& p, int64_t r, int64_t o) {
  return p.xw[r * p.xw_ld + o] + static_cast<acc_t>(p.bih[o]);
}

template <typename scalar_t, typename acc_t, typename HW>
__device__ __forceinline__ void lstm_forward_element(const ForwardStep<scalar_t, acc_t>& p, int64_t r, int64_t j,
                                                     int64_t H, int64_t Hr, bool proj, const HW& hw) {
  auto pre = [&](int64_t o) { return input_part(p, r, o) + (hw(o) + static_cast<acc_t>(p.bhh[o])); };
  acc_t i, f, g, o, c, h;
  cell::lstm_forward(pre(j), pre(H + j), pre(2 * H + j), pre(3 * H + j), p.c[r * H + j], i, f, g, o, c, h);
  p.c[r * H + j] = c;
  if (proj) {
    p.h_raw[r * H + j] = static_cast<scalar_t>(h);
  } else {
    p.out[r * Hr + j] = static_cast<scalar_t>(h);
    p.h[r * Hr + j] = static_cast<scalar_t>(h);
  }
  if (p.reserve) {
    acc_t* res = p.reserve + r * (5 * H + (proj ? H : 0));
    res[j] = i;
    res[H + j] = f;
    res[2 * H + j] = g;
    res[3 * H + j] = o;
    res[4 * H + j] = c;
    if (proj) res[5 * H + j] = h;
  }
}

template <typename scalar_t, typename acc_t, typename HW>
__device__ __forceinline__ void gru_forward_element(const ForwardStep<scalar_t, acc_t>& p, int64_t r, int64_t j,
                                                    int64_t H, const HW& hw) {
  auto rec = [&](int64_t o) { return hw(o) + static_cast<acc_t>(p.bhh[o]); };
  const acc_t x_n = input_part(p, r, 2 * H + j);
  const acc_t h_n = rec(2 * H + j);
  acc_t rg, zg, ng, h;
  cell::gru_forward(input_part(p, r, j) + rec(j), input_part(p, r, H + j) + rec(H + j), x_n, h_n,
                    static_cast<acc_t>(p.h[r * H + j]), rg, zg, ng, h);
  p.h[r * H + j] = static_cast<scalar_t>(h);
  p.out[r * H + j] = static_cast<scalar_t>(h);
  if (p.reserve) {
    acc_t* res = p.reserve + r * 4 * H;
    res[j] = rg;
    res[H + j] = zg;
    res[2 * H + j] = ng;
    res[3 * H + j] = h_n;
  }
}

template <typename scalar_t, typename acc_t, typename HW>
__device__ __forceinline__ void rnn_forward_element(const ForwardStep<scalar_t, acc_t>& p, int64_t r, int64_t j,
                                                    int64_t H, bool relu, const HW& hw) {
  const acc_t pre = input_part(p, r, j) + (hw(j) + static_cast<acc_t>(p.bhh[j]));
  const acc_t h = relu ? cell::rnn_relu_forward(pre) : cell::rnn_tanh_forward(pre);
  p.h[r * H + j] = static_cast<scalar_t>(h);
  p.out[r * H + j] = static_cast<scalar_t>(h);
}

// Gradient reaching h_t at (r, j): dh plus this step's grad_output, when there is one.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t incoming_dh(const BackwardStep<scalar_t, acc_t>& p, int64_t r, int64_t H,
                                             int64_t j) {
  acc_t d = static_cast<acc_t>(p.dh[r * H + j]);
  return p.dy ? d + static_cast<acc_t>(p.dy[r * p.dy_ld + j]) : d;
}

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void lstm_backward_element(const BackwardStep<scalar_t, acc_t>& p, int64_t r, int64_t j,
                                                      int64_t H, int64_t RW) {
  const acc_t* res = p.reserve + r * RW;
  acc_t di, df, dg, d_o, dcp;
  cell::lstm_backward(res[j], res[H + j], res[2 * H + j], res[3 * H + j], res[4 * H + j], p.c_prev[r * H + j],
                      incoming_dh(p, r, H, j), p.dc[r * H + j], di, df, dg, d_o, dcp);
  scalar_t* dgx = p.dg_x + r * 4 * H;
  dgx[j] = static_cast<scalar_t>(di);
  dgx[H + j] = static_cast<scalar_t>(df);
  dgx[2 * H + j] = static_cast<scalar_t>(dg);
  dgx[3 * H + j] = static_cast<scalar_t>(d_o);
  p.dc[r * H + j] = dcp;
}

// Leaves the direct part of dh_prev (dh * z) in dh; the caller adds dG_h @ W_hh.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void gru_backward_element(const BackwardStep<scalar_t, acc_t>& p, int64_t r, int64_t j,
                                                     int64_t H) {
  const acc_t* res = p.reserve + r * 4 * H;
  acc_t dr, dz, dxn, dhn, dhp;
  cell::gru_backward(res[j], res[H + j], res[2 * H + j], res[3 * H + j], static_cast<acc_t>(p.h_prev[r * H + j]),
                     incoming_dh(p, r, H, j), dr, dz, dxn, dhn, dhp);
  scalar_t* dgx = p.dg_x + r * 3 * H;
  scalar_t* dgh = p.dg_h + r * 3 * H;
  dgx[j] = dgh[j] = static_cast<scalar_t>(dr);
  dgx[H + j] = dgh[H + j] = static_cast<scalar_t>(dz);
  dgx[2 * H + j] = static_cast<scalar_t>(dxn);
  dgh[2 * H + j] = static_cast<scalar_t>(dhn);
  p.dh[r * H + j] = static_cast<scalar_t>(dhp);
}

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void rnn_backward_element(const BackwardStep<scalar_t, acc_t>& p, int64_t r, int64_t j,
                                                     int64_t H, bool relu) {
  const acc_t h = static_cast<acc_t>(p.out[r * H + j]);
  const acc_t d = incoming_dh(p, r, H, j);
  p.dg_x[r * H + j] = static_cast<scalar_t>(relu ? cell::rnn_relu_backward(h, d) : cell::rnn_tanh_backward(h, d));
}

}  // namespace
}  // namespace fusedrnn
