// Overloads of cell_math.h's elementary functions for at::vec::Vectorized, so the CPU backend
// runs the one shared cell math on whole SIMD vectors.
// Include this BEFORE cell_math.h: the cell templates find these overloads by ordinary lookup
// at their point of definition (Vectorized lives in another namespace, so ADL would not).
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

namespace fusedrnn {
namespace cell {

template <typename S>
using Vec = at::vec::Vectorized<S>;

template <typename S>
inline Vec<S> exp_(Vec<S> x) { return x.exp(); }
template <typename S>
inline Vec<S> tanh_(Vec<S> x) { return x.tanh(); }
template <typename S>
inline Vec<S> sigmoid_(Vec<S> x) {
  const Vec<S> one(S(1));
  return one / (one + x.neg().exp());
}
// at::vec::maximum propagates NaN, like torch.relu.
template <typename S>
inline Vec<S> relu_(Vec<S> x) { return at::vec::maximum(x, Vec<S>(S(0))); }
template <typename S>
inline Vec<S> relu_backward_(Vec<S> y, Vec<S> dy) {
  return Vec<S>::blendv(Vec<S>(S(0)), dy, y > Vec<S>(S(0)));
}

}  // namespace cell
}  // namespace fusedrnn
