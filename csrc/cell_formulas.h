// The per-element formulas of every cell, templates over the math type T (see cell_math.h, which
// includes this inside namespace fusedrnn::cell with its elementary functions declared first).
// No include guard, no includes, no namespace: the CPU backend includes it a second time, in the
// namespace of its 16-lane build (layer_kernel.cpp, zmm_isa::cell), so that the formulas are
// compiled for AVX-512 and inline that build's sigmoid_ / tanh_ / relu_ (a template instantiated
// from the AVX2 definition could not inline them: an AVX2 function cannot inline an AVX-512 one).
// Needs FUSEDRNN_HD and sigmoid_, tanh_, relu_, relu_backward_ for T in scope.

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
