// Overloads of cell_math.h's elementary functions for at::vec::Vectorized, so the CPU backend
// runs the one shared cell math on whole SIMD vectors.
// Include this BEFORE cell_math.h: the cell templates find these overloads by ordinary lookup
// at their point of definition (Vectorized lives in another namespace, so ADL would not).
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#if defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace fusedrnn {
namespace cell {

template <typename S>
using Vec = at::vec::Vectorized<S>;

template <typename S>
inline Vec<S> exp_(Vec<S> x) { return x.exp(); }
template <typename S>
inline Vec<S> tanh_(Vec<S> x) { return x.tanh(); }

// The constants of the float exp and tanh below, which vec512.h's 16-lane versions share (the
// same operations in the same order, so both give the same float in every lane). Polynomial
// coefficients highest power first, for Horner's rule.
namespace approx {
constexpr float kExpMax = 88.7f, kExpMin = -87.3f;  // exp's clamp of x
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;  // ln2 in two parts, n * hi exact
constexpr float kExpTaylor[] = {1.f / 5040.f, 1.f / 720.f, 1.f / 120.f, 1.f / 24.f, 1.f / 6.f, 0.5f, 1.f, 1.f};
constexpr float kTanhMax = 9.f;  // tanh's clamp of |x|
// tanh(x) / x = P(x^2) / Q(x^2), from scripts/fit_tanh.py.
constexpr float kTanhP[] = {-8.487827817980562e-14f, 5.277674477999206e-11f, -2.0224824481829273e-08f,
                            1.1154249477840494e-05f, 0.0031039530877023935f, 0.13084007799625397f, 1.f};
constexpr float kTanhQ[] = {0.0002546139294281602f, 0.024495169520378113f, 0.4641733467578888f, 1.f};
}  // namespace approx

#if defined(CPU_CAPABILITY_AVX2)
// float exp on AVX2, shorter than SLEEF's general routine (with it, an LSTM step's pointwise pass
// at batch 32, hidden 128 went from ~39 to ~30 us on one thread), within 3e-7 relative: x = n ln2 + r with
// |r| <= ln2 / 2 (ln2 split in two parts so that n ln2 is exact), e^r by its Taylor series to r^7
// (truncation < 6e-9), times 2^n built in the exponent bits. x is clamped to [-87.3, 88.7], where
// 2^n stays a normal number: e^x saturates at 2.5e38 and bottoms out at 1.2e-38 instead of going
// to inf / 0, which leaves sigmoid and tanh below exact to far under their rounding error. NaN
// propagates (min/max return their second operand when either is NaN).
inline Vec<float> exp_(Vec<float> x) {
  using namespace approx;
  __m256 v = _mm256_min_ps(_mm256_set1_ps(kExpMax), x);
  v = _mm256_max_ps(_mm256_set1_ps(kExpMin), v);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), v);  // ln2 high part: 9 bits, exact n * hi
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);         // ln2 - hi
  __m256 p = _mm256_set1_ps(kExpTaylor[0]);
  for (int i = 1; i < 8; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpTaylor[i]));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return Vec<float>(_mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}
#endif

// float tanh as x P(x^2) / Q(x^2), P of degree 6 and Q of degree 3 in x^2, fitted to tanh(x)/x on
// [0, 9] by scripts/fit_tanh.py (iteratively reweighted least squares towards the smallest largest
// relative error: 7e-9 in exact arithmetic). Evaluated in float: within 3.4e-7 relative of the
// exact value (every float in [0.25, 10) checked, and 4e7 random ones elsewhere), largest near 6
// where the result rounds close to 1. |x| is clamped to 9, past which tanh rounds to 1 in float,
// and the magnitude to 1, which the rounded quotient can pass by an ulp. One division and 14 other
// operations, where the earlier 1 - 2 / (exp(2|x|) + 1), with a Taylor series near 0, took about 35:
// fastai_rnn's forward on one thread, 10.7-10.8 ms -> 9.6-9.8 (best of 30, three alternations).
// NaN propagates (minimum keeps it, | keeps it).
inline Vec<float> tanh_(Vec<float> x) {
  using namespace approx;
  const Vec<float> one(1.f), sign_mask(-0.f);
  const Vec<float> ax = at::vec::minimum(x.abs(), Vec<float>(kTanhMax));
  const Vec<float> t = ax * ax;
  Vec<float> p(kTanhP[0]);
  for (int i = 1; i < 7; ++i) p = at::vec::fmadd(p, t, Vec<float>(kTanhP[i]));
  Vec<float> q(kTanhQ[0]);
  for (int i = 1; i < 4; ++i) q = at::vec::fmadd(q, t, Vec<float>(kTanhQ[i]));
  const Vec<float> magnitude = at::vec::minimum((ax * p) / q, one);
  // Restore the sign; NaN stays NaN.
  return magnitude | (x & sign_mask);
}
template <typename S>
inline Vec<S> sigmoid_(Vec<S> x) {
  const Vec<S> one(S(1));
  return one / (one + exp_(x.neg()));
}
// at::vec::maximum propagates NaN, like torch.relu.
template <typename S>
inline Vec<S> relu_(Vec<S> x) { return at::vec::maximum(x, Vec<S>(S(0))); }
template <typename S>
inline Vec<S> relu_backward_(Vec<S> y, Vec<S> dy) {
  return Vec<S>::blendv(Vec<S>(S(0)), dy, y > Vec<S>(S(0)));
}

// Two vectors processed together: the cell math on a Pair runs each operation on both side by
// side, two independent dependency chains for the out-of-order core to overlap. Named members,
// not an array (GCC kept an array of __m256 on the stack).
template <typename S>
struct Pair {
  Vec<S> a, b;
  Pair() = default;
  Pair(Vec<S> a_, Vec<S> b_) : a(a_), b(b_) {}
  explicit Pair(S x) : a(x), b(x) {}
};
template <typename S> inline Pair<S> operator+(const Pair<S>& x, const Pair<S>& y) { return {x.a + y.a, x.b + y.b}; }
template <typename S> inline Pair<S> operator-(const Pair<S>& x, const Pair<S>& y) { return {x.a - y.a, x.b - y.b}; }
template <typename S> inline Pair<S> operator*(const Pair<S>& x, const Pair<S>& y) { return {x.a * y.a, x.b * y.b}; }
template <typename S> inline Pair<S> operator/(const Pair<S>& x, const Pair<S>& y) { return {x.a / y.a, x.b / y.b}; }
template <typename S> inline Pair<S> exp_(const Pair<S>& x) { return {exp_(x.a), exp_(x.b)}; }
template <typename S> inline Pair<S> tanh_(const Pair<S>& x) { return {tanh_(x.a), tanh_(x.b)}; }
template <typename S> inline Pair<S> sigmoid_(const Pair<S>& x) { return {sigmoid_(x.a), sigmoid_(x.b)}; }
template <typename S> inline Pair<S> relu_(const Pair<S>& x) { return {relu_(x.a), relu_(x.b)}; }
template <typename S> inline Pair<S> relu_backward_(const Pair<S>& y, const Pair<S>& dy) {
  return {relu_backward_(y.a, dy.a), relu_backward_(y.b, dy.b)};
}

}  // namespace cell
}  // namespace fusedrnn
