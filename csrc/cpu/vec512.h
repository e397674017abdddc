// Float32 SIMD vectors of 16 lanes (AVX-512) for the forward pointwise pass of float32 layers,
// with the cell math's elementary functions on them. Included by layer_kernel.cpp inside its
// AVX-512 `#pragma GCC target` region, in the namespace of that build (zmm_isa, where the cell
// math finds these functions by argument-dependent lookup); no include guard, no includes, no
// namespace: the includer provides <immintrin.h>, <cstdint> and the namespace.
//
// Why not at::vec::Vectorized: the extension is built for AVX2, where Vectorized<float> has 8
// lanes, and the AVX-512 build of pointwise.h (wide_isa) runs those 8-lane vectors in 32
// registers. Here each operation covers 16 lanes, the constants stay in registers, and the
// quotients of sigmoid and tanh come from a reciprocal estimate refined once (4 operations that
// pipeline) instead of a division (one every few cycles at best on one port).
//
// The functions are the AVX2 ones of vec_math.h lane for lane, on its constants (fusedrnn::cell::approx):
// the same exp (Taylor series to r^7 after the ln2 split, 2^n in the exponent bits, x clamped to
// [-87.3, 88.7]) and the same rational tanh (coefficients from scripts/fit_tanh.py). NaN propagates: _mm512_min_ps and
// _mm512_max_ps return their second operand when either is NaN, and that is where the input goes.

struct Z16 {
  __m512 v;
  Z16() = default;
  explicit Z16(__m512 x) : v(x) {}
  explicit Z16(float x) : v(_mm512_set1_ps(x)) {}
  static constexpr int64_t size() { return 16; }
  // The first n lanes (n in [0, 16]).
  static __mmask16 lanes(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static Z16 loadu(const float* p) { return Z16(_mm512_loadu_ps(p)); }
  static Z16 loadu(const float* p, int64_t n) { return Z16(_mm512_maskz_loadu_ps(lanes(n), p)); }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store(float* p, int64_t n) const { _mm512_mask_storeu_ps(p, lanes(n), v); }
};
inline Z16 operator+(Z16 x, Z16 y) { return Z16(_mm512_add_ps(x.v, y.v)); }
inline Z16 operator-(Z16 x, Z16 y) { return Z16(_mm512_sub_ps(x.v, y.v)); }
inline Z16 operator*(Z16 x, Z16 y) { return Z16(_mm512_mul_ps(x.v, y.v)); }
inline Z16 operator/(Z16 x, Z16 y) { return Z16(_mm512_div_ps(x.v, y.v)); }

// n / d from d's reciprocal estimate (relative error under 2^-14): q0 = n r, then one correction
// by the residual n - d q0 (exact in the FMA), which leaves a relative error of about 2^-28
// before the last rounding. For finite d >= 1 (both callers).
inline __m512 quotient(__m512 n, __m512 d) {
  const __m512 r = _mm512_rcp14_ps(d);
  const __m512 q0 = _mm512_mul_ps(n, r);
  return _mm512_fmadd_ps(_mm512_fnmadd_ps(d, q0, n), r, q0);
}

inline Z16 exp_(Z16 x) {
  using namespace fusedrnn::cell::approx;
  __m512 v = _mm512_min_ps(_mm512_set1_ps(kExpMax), x.v);
  v = _mm512_max_ps(_mm512_set1_ps(kExpMin), v);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), v);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kExpTaylor[0]);
  for (int i = 1; i < 8; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpTaylor[i]));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return Z16(_mm512_mul_ps(p, _mm512_castsi512_ps(e)));
}

// 1 / (1 + e^-x). exp_ reaches inf at the top of its clamp (2^128), and inf's estimate, 0, times
// inf is NaN: the denominator is capped at FLT_MAX (NaN passes the cap), where the quotient, under
// 3e-39, is as good as 0.
inline Z16 sigmoid_(Z16 x) {
  const __m512 one = _mm512_set1_ps(1.f);
  const Z16 e = exp_(Z16(_mm512_xor_ps(x.v, _mm512_set1_ps(-0.f))));
  const __m512 d = _mm512_min_ps(_mm512_set1_ps(3.40282347e38f), _mm512_add_ps(one, e.v));
  return Z16(quotient(one, d));
}

// vec_math.h's rational tanh: |x| P(x^2) / Q(x^2) clamped to 1, the sign restored; Q >= 1.
inline Z16 tanh_(Z16 x) {
  using namespace fusedrnn::cell::approx;
  const __m512 one = _mm512_set1_ps(1.f), sign_mask = _mm512_set1_ps(-0.f);
  const __m512 ax = _mm512_min_ps(_mm512_set1_ps(kTanhMax), _mm512_andnot_ps(sign_mask, x.v));
  const __m512 t = _mm512_mul_ps(ax, ax);
  __m512 p = _mm512_set1_ps(kTanhP[0]);
  for (int i = 1; i < 7; ++i) p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(kTanhP[i]));
  __m512 q = _mm512_set1_ps(kTanhQ[0]);
  for (int i = 1; i < 4; ++i) q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(kTanhQ[i]));
  const __m512 magnitude = _mm512_min_ps(one, quotient(_mm512_mul_ps(ax, p), q));
  return Z16(_mm512_or_ps(magnitude, _mm512_and_ps(x.v, sign_mask)));
}
inline Z16 relu_(Z16 x) { return Z16(_mm512_max_ps(_mm512_setzero_ps(), x.v)); }

// Two vectors side by side (two dependency chains), as cell::Pair is for Vectorized. Its own type,
// not cell::Pair over Z16: operators defined outside the AVX-512 region could not inline Z16's.
// Only the float one exists.
template <typename S>
struct ZPair;
template <>
struct ZPair<float> {
  Z16 a, b;
  ZPair() = default;
  ZPair(Z16 a_, Z16 b_) : a(a_), b(b_) {}
};
using ZP = ZPair<float>;
inline ZP operator+(const ZP& x, const ZP& y) { return {x.a + y.a, x.b + y.b}; }
inline ZP operator-(const ZP& x, const ZP& y) { return {x.a - y.a, x.b - y.b}; }
inline ZP operator*(const ZP& x, const ZP& y) { return {x.a * y.a, x.b * y.b}; }
inline ZP operator/(const ZP& x, const ZP& y) { return {x.a / y.a, x.b / y.b}; }
inline ZP exp_(const ZP& x) { return {exp_(x.a), exp_(x.b)}; }
inline ZP tanh_(const ZP& x) { return {tanh_(x.a), tanh_(x.b)}; }
inline ZP sigmoid_(const ZP& x) { return {sigmoid_(x.a), sigmoid_(x.b)}; }
inline ZP relu_(const ZP& x) { return {relu_(x.a), relu_(x.b)}; }
