// The CPU's fused pointwise passes and their helpers, included three times by layer_kernel.cpp: once as
// the build's ISA (AVX2) compiles them, once under `#pragma GCC target` with AVX-512, where the
// same 256-bit code gets 32 vector registers instead of 16 (AVX-512VL) and no longer spills the
// cell math's constants to the stack; and the float32 forward pass a third time on 16-lane vectors
// (vec512.h). No include guard, no includes: the includer provides the vector types Vec<S> and
// VecPair<S>, cell::, at::, LayerShape, ForwardStep, BackwardStep and serial_loop, and the namespace.

// Loads and stores of n lanes for a vector type V: one vector (n <= its size) or a VecPair of
// them (n both widths).
template <typename V>
struct Io {
  template <typename S>
  static V load(const S* p, int64_t n) { return n == V::size() ? V::loadu(p) : V::loadu(p, n); }
  template <typename S>
  static void store(const V& v, S* p, int64_t n) {
    if (n == V::size()) {
      v.store(p);
    } else {
      v.store(p, n);
    }
  }
};
template <typename S>
struct Io<VecPair<S>> {
  static VecPair<S> load(const S* p, int64_t) { return {Vec<S>::loadu(p), Vec<S>::loadu(p + Vec<S>::size())}; }
  static void store(const VecPair<S>& v, S* p, int64_t) {
    v.a.store(p);
    v.b.store(p + Vec<S>::size());
  }
};
template <typename V, typename S>
inline V load(const S* p, int64_t n) { return Io<V>::load(p, n); }
template <typename V, typename S>
inline void store(const V& v, S* p, int64_t n) { Io<V>::store(v, p, n); }

// Calls f(V{}, j, n) over [j0, j1) in chunks of n lanes: with Paired, pairs of SIMD vectors
// (V = VecPair) while two fit, then single vectors (V = Vec; the last may be short).
// Pairs give the out-of-order core two independent chains through the cell math at a time. On one
// thread at fastai's shapes (hidden 100, batch 256, 72 steps; best of 4 alternations of 40 calls),
// forward: RNN 10.50 -> 9.99 ms, GRU 30.5 -> 29.7, LSTM 40.6 -> 40.5; backward step loop: RNN
// 4.98 -> 4.83, GRU 18.0 -> 17.7, but LSTM 23.6 -> 24.7 (its eight inputs per lane no longer fit
// the registers twice over), so the LSTM backward pass goes one vector at a time.
template <typename scalar_t, bool Paired = true, typename F>
inline void for_each_chunk(int64_t j0, int64_t j1, const F& f) {
  constexpr int64_t L = Vec<scalar_t>::size();
  int64_t j = j0;
  if constexpr (Paired) {
    for (; j + 2 * L <= j1; j += 2 * L) f(VecPair<scalar_t>(), j, 2 * L);
  }
  for (; j + L <= j1; j += L) f(Vec<scalar_t>(), j, L);
  if (j < j1) f(Vec<scalar_t>(), j, j1 - j);
}

// Runs f(r) for rows [0, rows), in parallel when the step is big enough to pay for it.
template <typename F>
inline void for_each_row(int64_t rows, int64_t row_elems, const F& f) {
  if (serial_loop) {
    for (int64_t r = 0; r < rows; ++r) f(r);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, row_elems));
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) f(r);
  });
}

// The forward pass of one step's b rows over the hidden units [j0, j1) (all of them by default; a
// slice of them where the units are split between threads).
template <typename scalar_t>
void forward_pointwise(const LayerShape& s, int64_t b, const ForwardStep<scalar_t, scalar_t>& p, int64_t j0 = 0,
                       int64_t j1 = -1) {
  if (j1 < 0) j1 = s.H;
  const int64_t H = s.H, GH = s.G * s.H, Hr = s.Hr, RW = s.reserve_width();
  // A gate's preactivation at columns [o, o + n): input projection plus both biases plus h @ W_hh.
  auto preact = [&](auto zero, const scalar_t* xw, const scalar_t* hw, int64_t o, int64_t n) {
    using V = decltype(zero);
    return (load<V>(xw + o, n) + load<V>(p.bih + o, n)) + (load<V>(hw + o, n) + load<V>(p.bhh + o, n));
  };
  switch (s.cell) {
    case CellType::LSTM:
      for_each_row(b, GH, [&](int64_t r) {
        const scalar_t* xw = p.xw + r * p.xw_ld;
        const scalar_t* hw = p.hw + r * GH;
        scalar_t* c = p.c + r * H;
        scalar_t* res = p.reserve ? p.reserve + r * RW : nullptr;
        for_each_chunk<scalar_t>(j0, j1, [&](auto zero, int64_t j, int64_t n) {
          using V = decltype(zero);
          V pre[4];
          for (int k = 0; k < 4; ++k) {
            pre[k] = preact(zero, xw, hw, k * H + j, n);
          }
          V i, f, g, o, cn, hn;
          cell::lstm_forward(pre[0], pre[1], pre[2], pre[3], load<V>(c + j, n), i, f, g, o, cn, hn);
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
        const scalar_t* xw = p.xw + r * p.xw_ld;
        const scalar_t* hw = p.hw + r * GH;
        scalar_t* h = p.h + r * H;
        scalar_t* res = p.reserve ? p.reserve + r * RW : nullptr;
        for_each_chunk<scalar_t>(j0, j1, [&](auto zero, int64_t j, int64_t n) {
          using V = decltype(zero);
          const V pre_r = preact(zero, xw, hw, j, n);
          const V pre_z = preact(zero, xw, hw, H + j, n);
          const V x_n = load<V>(xw + 2 * H + j, n) + load<V>(p.bih + 2 * H + j, n);
          const V h_n = load<V>(hw + 2 * H + j, n) + load<V>(p.bhh + 2 * H + j, n);
          V rg, zg, ng, hn;
          cell::gru_forward(pre_r, pre_z, x_n, h_n, load<V>(h + j, n), rg, zg, ng, hn);
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
        const scalar_t* xw = p.xw + r * p.xw_ld;
        const scalar_t* hw = p.hw + r * H;
        for_each_chunk<scalar_t>(j0, j1, [&](auto zero, int64_t j, int64_t n) {
          using V = decltype(zero);
          const V pre = preact(zero, xw, hw, j, n);
          const V hn = relu ? cell::rnn_relu_forward(pre) : cell::rnn_tanh_forward(pre);
          store(hn, p.h + r * H + j, n);
          store(hn, p.out + r * H + j, n);
        });
      });
      break;
    }
  }
}

// The backward pass of one step's b rows over the hidden units [j0, j1) (all by default).
template <typename scalar_t>
void backward_pointwise(const LayerShape& s, int64_t b, const BackwardStep<scalar_t, scalar_t>& p, int64_t j0 = 0,
                        int64_t j1 = -1) {
  if (j1 < 0) j1 = s.H;
  const int64_t H = s.H, GH = s.G * s.H, RW = s.reserve_width();
  // Gradient reaching h: dh plus this step's grad_output, when there is one.
  auto dh_at = [&](auto zero, int64_t r, int64_t j, int64_t n) {
    using V = decltype(zero);
    V d = load<V>(p.dh + r * H + j, n);
    return p.dy ? d + load<V>(p.dy + r * p.dy_ld + j, n) : d;
  };
  switch (s.cell) {
    case CellType::LSTM:
      for_each_row(b, GH, [&](int64_t r) {
        const scalar_t* res = p.reserve + r * RW;
        scalar_t* dg = p.dg_x + r * GH;
        for_each_chunk<scalar_t, false>(j0, j1, [&](auto zero, int64_t j, int64_t n) {
          using V = decltype(zero);
          V di, df, dgg, dout, dcp;
          cell::lstm_backward(load<V>(res + j, n), load<V>(res + H + j, n), load<V>(res + 2 * H + j, n),
                              load<V>(res + 3 * H + j, n), load<V>(res + 4 * H + j, n),
                              load<V>(p.c_prev + r * H + j, n), dh_at(zero, r, j, n),
                              load<V>(p.dc + r * H + j, n), di, df, dgg, dout, dcp);
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
        for_each_chunk<scalar_t>(j0, j1, [&](auto zero, int64_t j, int64_t n) {
          using V = decltype(zero);
          V dr, dz, dxn, dhn, dhp;
          cell::gru_backward(load<V>(res + j, n), load<V>(res + H + j, n), load<V>(res + 2 * H + j, n),
                             load<V>(res + 3 * H + j, n), load<V>(p.h_prev + r * H + j, n),
                             dh_at(zero, r, j, n), dr, dz, dxn, dhn, dhp);
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
        for_each_chunk<scalar_t>(j0, j1, [&](auto zero, int64_t j, int64_t n) {
          using V = decltype(zero);
          const V h = load<V>(p.out + r * H + j, n);
          const V d = dh_at(zero, r, j, n);
          store(relu ? cell::rnn_relu_backward(h, d) : cell::rnn_tanh_backward(h, d),
                p.dg_x + r * H + j, n);
        });
      });
      break;
    }
  }
}
