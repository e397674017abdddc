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

// The cells' formulas, in a file of their own so that the CPU's 16-lane build (layer_kernel.cpp,
// zmm_isa) can instantiate the same text inside its AVX-512 target region.
#include "cell_formulas.h"

}  // namespace cell
}  // namespace fusedrnn
