// The per-element math of every recurrent cell, written once for all backends.
//
// Every function is a template over the math type T: float or double on both backends, and
// at::vec::Vectorized<float|double> on the CPU, which supplies its own overloads of the
// elementary functions below (csrc/cpu/vec_math.h). Half and bfloat16 storage is computed in
// float (at::opmath_type). Gate order and formulas are torch.nn's (shared/CONTRACT.md):
//   LSTM [i|f|g|o]: c' = f*c + i*g, h' = o*tanh(c')
//   GRU  [r|z|n]:   n = tanh(x_n + r*(W_hn h + b_hn)), h' = n + z*(h - n)
//   RNN:            h' = tanh|relu(x + W_hh h + b)
// "pre_*" are pre-activation sums (input part + recurrent part + both biases) computed by the
// caller; forward functions return post-activation gates, which is what backward functions take.
#pragma once

#include <cmath>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FUSEDRNN_HD __host__ __device__ __forceinline__
#else
#define FUSEDRNN_HD inline
#endif

namespace fusedrnn {
namespace cell {

enum class CellType : int { RNN_TANH = 0, RNN_RELU = 1, LSTM = 2, GRU = 3 };

// Number of gates stacked in W_ih / W_hh rows.
FUSEDRNN_HD int num_gates(CellType c) {
  return c == CellType::LSTM ? 4 : (c == CellType::GRU ? 3 : 1);
}

// ---- elementary functions, scalar versions ------------------------------------------------
FUSEDRNN_HD float exp_(float x) { return ::expf(x); }
FUSEDRNN_HD double exp_(double x) { return ::exp(x); }
FUSEDRNN_HD float tanh_(float x) { return ::tanhf(x); }
FUSEDRNN_HD double tanh_(double x) { return ::tanh(x); }
template <typename T>
FUSEDRNN_HD T sigmoid_(T x) { return T(1) / (T(1) + exp_(-x)); }
// relu propagates NaN like torch.relu.
template <typename T>
FUSEDRNN_HD T relu_(T x) { return (x > T(0) || x != x) ? x : T(0); }
// Gradient of relu given its output y: dy where y > 0, else 0 (torch's threshold_backward).
template <typename T>
FUSEDRNN_HD T relu_backward_(T y, T dy) { return y > T(0) ? dy : T(0); }

// ---- vanilla RNN -------------------------------------------------------------------------
template <typename T>
FUSEDRNN_HD T rnn_tanh_forward(T pre) { return tanh_(pre); }
template <typename T>
FUSEDRNN_HD T rnn_tanh_backward(T h, T dh) { return dh * (T(1) - h * h); }
template <typename T>
FUSEDRNN_HD T rnn_relu_forward(T pre) { return relu_(pre); }
template <typename T>
FUSEDRNN_HD T rnn_relu_backward(T h, T dh) { return relu_backward_(h, dh); }

// ---- LSTM --------------------------------------------------------------------------------
template <typename T>
FUSEDRNN_HD void lstm_forward(T pre_i, T pre_f, T pre_g, T pre_o, T c_prev,
                              T& i, T& f, T& g, T& o, T& c, T& h) {
  i = sigmoid_(pre_i);
  f = sigmoid_(pre_f);
  g = tanh_(pre_g);
  o = sigmoid_(pre_o);
  c = f * c_prev + i * g;
  h = o * tanh_(c);
}

// dh: gradient reaching h' (before any projection); dc: gradient reaching c' from step t+1 and
// c_n. Returns pre-activation gate gradients and the gradient for c_prev.
template <typename T>
FUSEDRNN_HD void lstm_backward(T i, T f, T g, T o, T c, T c_prev, T dh, T dc,
                               T& dpre_i, T& dpre_f, T& dpre_g, T& dpre_o, T& dc_prev) {
  const T one(1);
  const T tc = tanh_(c);
  const T dc_total = dc + dh * o * (one - tc * tc);
  dpre_o = dh * tc * o * (one - o);
  dpre_i = dc_total * g * i * (one - i);
  dpre_f = dc_total * c_prev * f * (one - f);
  dpre_g = dc_total * i * (one - g * g);
  dc_prev = dc_total * f;
}

// ---- GRU ---------------------------------------------------------------------------------
// x_n = W_in x + b_in; h_n = W_hn h + b_hn (kept apart: r multiplies h_n only).
template <typename T>
FUSEDRNN_HD void gru_forward(T pre_r, T pre_z, T x_n, T h_n, T h_prev,
                             T& r, T& z, T& n, T& h) {
  r = sigmoid_(pre_r);
  z = sigmoid_(pre_z);
  n = tanh_(x_n + r * h_n);
  h = n + z * (h_prev - n);
}

// Returns the gradients of pre_r, pre_z, x_n, h_n, and the direct part of dh_prev (dh * z);
// the caller adds the recurrent part (dgates_h @ W_hh).
template <typename T>
FUSEDRNN_HD void gru_backward(T r, T z, T n, T h_n, T h_prev, T dh,
                              T& dpre_r, T& dpre_z, T& dx_n, T& dh_n, T& dh_prev) {
  const T one(1);
  const T dn = dh * (one - z);
  const T dz = dh * (h_prev - n);
  dx_n = dn * (one - n * n);
  dh_n = dx_n * r;
  dpre_r = dx_n * h_n * r * (one - r);
  dpre_z = dz * z * (one - z);
  dh_prev = dh * z;
}

}  // namespace cell
}  // namespace fusedrnn
