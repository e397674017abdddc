// The CUDA backend of the layer ops, written once for both of its builds: nvcc compiles it for the
// GPU (layer_kernel.cu) and g++ for the CPU over the emulation layer (csrc/emu/layer_kernel.cpp),
// each after including its own compat.h (launches, streams, device guard). Nothing below depends
// on which.
//
// The fused pointwise passes are kernels, one thread per element of a step, math in
// acc_t = at::opmath_type<scalar_t> (float for half / bfloat16 storage) through cell_math.h. The
// loop around them (GEMMs through ATen / cuBLAS on the current stream) is csrc/layer_driver.h. No
// atomics: every output element is written by exactly one thread.
#pragma once

#include "../cell_math.h"
#include "../layer_driver.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/ScalarType.h>

#include <type_traits>

namespace fusedrnn {
namespace {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

// Element (r, j) of a step with b rows of width H; false past the end.
__device__ __forceinline__ bool element(int64_t b, int64_t H, int64_t& r, int64_t& j) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= b * H) return false;
  r = idx / H;
  j = idx - r * H;
  return true;
}

// Input part (with b_ih) and recurrent part (with b_hh) of gate column o of row r.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t input_part(const ForwardStep<scalar_t, acc_t>& p, int64_t r, int64_t o) {
  return p.xw[r * p.xw_ld + o] + static_cast<acc_t>(p.bih[o]);
}
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t recurrent_part(const ForwardStep<scalar_t, acc_t>& p, int64_t r, int64_t GH,
                                                int64_t o) {
  return p.hw[r * GH + o] + static_cast<acc_t>(p.bhh[o]);
}
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t pre_activation(const ForwardStep<scalar_t, acc_t>& p, int64_t r, int64_t GH,
                                                int64_t o) {
  return input_part(p, r, o) + recurrent_part(p, r, GH, o);
}

template <typename scalar_t, typename acc_t>
__global__ void lstm_forward_kernel(ForwardStep<scalar_t, acc_t> p, int64_t b, int64_t H, int64_t Hr, bool proj) {
  int64_t r, j;
  if (!element(b, H, r, j)) return;
  const int64_t GH = 4 * H;
  acc_t i, f, g, o, c, h;
  cell::lstm_forward(pre_activation(p, r, GH, j), pre_activation(p, r, GH, H + j),
                     pre_activation(p, r, GH, 2 * H + j), pre_activation(p, r, GH, 3 * H + j), p.c[r * H + j], i, f,
                     g, o, c, h);
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

template <typename scalar_t, typename acc_t>
__global__ void gru_forward_kernel(ForwardStep<scalar_t, acc_t> p, int64_t b, int64_t H) {
  int64_t r, j;
  if (!element(b, H, r, j)) return;
  const int64_t GH = 3 * H;
  const acc_t x_n = input_part(p, r, 2 * H + j);
  const acc_t h_n = recurrent_part(p, r, GH, 2 * H + j);
  acc_t rg, zg, ng, h;
  cell::gru_forward(pre_activation(p, r, GH, j), pre_activation(p, r, GH, H + j), x_n, h_n,
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

template <typename scalar_t, typename acc_t>
__global__ void rnn_forward_kernel(ForwardStep<scalar_t, acc_t> p, int64_t b, int64_t H, bool relu) {
  int64_t r, j;
  if (!element(b, H, r, j)) return;
  const acc_t pre = pre_activation(p, r, H, j);
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
__global__ void lstm_backward_kernel(BackwardStep<scalar_t, acc_t> p, int64_t b, int64_t H, int64_t RW) {
  int64_t r, j;
  if (!element(b, H, r, j)) return;
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

template <typename scalar_t, typename acc_t>
__global__ void gru_backward_kernel(BackwardStep<scalar_t, acc_t> p, int64_t b, int64_t H) {
  int64_t r, j;
  if (!element(b, H, r, j)) return;
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
__global__ void rnn_backward_kernel(BackwardStep<scalar_t, acc_t> p, int64_t b, int64_t H, bool relu) {
  int64_t r, j;
  if (!element(b, H, r, j)) return;
  const acc_t h = static_cast<acc_t>(p.out[r * H + j]);
  const acc_t d = incoming_dh(p, r, H, j);
  p.dg_x[r * H + j] = static_cast<scalar_t>(relu ? cell::rnn_relu_backward(h, d) : cell::rnn_tanh_backward(h, d));
}

struct CudaBackend {
  using Guard = compat::DeviceGuard;
  static constexpr bool kRowBlocks = false;       // one loop over all rows; kernels span the rows
  static constexpr bool kUnitSplit = false;
  static constexpr bool kStepInputProjection = false;  // one input projection for all rows
  static constexpr bool kWeightGrad = false;           // weight gradients through cuBLAS (the driver's)
  // Large buffers: PyTorch's caching allocator already reuses them.
  static Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) { return at::empty(sizes, options); }

  static void check(const Tensor& input) {
    TORCH_CHECK(compat::is_device_tensor(input), "fusedrnn: the ", compat::kBackendName, " kernels got a tensor on ",
                input.device());
    const auto t = input.scalar_type();
    TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16, "fusedrnn: the ",
                compat::kBackendName, " kernels support float32, float64, float16 and bfloat16, got ", t);
  }

  template <typename F>
  static void dispatch(at::ScalarType type, const F& f) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, type, "fusedrnn_layer_cuda", [&] { f(scalar_t(0)); });
  }

  // xw (in the math type) = X @ W^T: half / bfloat16 operands are multiplied in float.
  static void input_projection(Tensor& xw, const Tensor& X, const Tensor& W) {
    if (X.scalar_type() == xw.scalar_type()) {
      at::mm_out(xw, X, W.t());
    } else {
      at::mm_out(xw, X.to(xw.scalar_type()), W.to(xw.scalar_type()).t());
    }
  }
  static Tensor input_grad(const Tensor& dG, const Tensor& W) { return at::mm(dG, W); }

  // Per-step products through ATen (cuBLAS on the GPU), on borrowed memory; the weight as it is,
  // and for half / bfloat16 also in float, once per layer call, for the products kept in float.
  template <typename scalar_t>
  struct StepWeight {
    StepWeight() = default;
    StepWeight(const LayerShape&, const Tensor& W, bool transpose_w) : weight(W), transpose_w(transpose_w) {
      if (W.scalar_type() != at::toOpMathType(W.scalar_type())) weight_acc = W.to(at::toOpMathType(W.scalar_type()));
    }
    Tensor weight, weight_acc;
    bool transpose_w = true;
    Tensor as_operand(const Tensor& w) const { return transpose_w ? w.t() : w; }
  };
  // C = A @ op(W) + beta C. C in the storage type, or (the recurrent product) in the math type.
  template <typename scalar_t, typename out_t>
  static void gemm(int64_t m, int64_t n, int64_t k, const scalar_t* A, const StepWeight<scalar_t>& W, out_t beta,
                   out_t* C, const at::TensorOptions& opts) {
    if (m == 0 || n == 0) return;
    const Tensor a = at::from_blob(const_cast<scalar_t*>(A), {m, k}, opts);
    Tensor c = at::from_blob(C, {m, n}, opts.dtype(c10::CppTypeToScalarType<out_t>::value));
    const bool widen = !std::is_same<scalar_t, out_t>::value;
    const Tensor w = W.as_operand(widen ? W.weight_acc : W.weight);
    const Tensor a_op = widen ? a.to(c.scalar_type()) : a;
    if (static_cast<float>(beta) == 0.f) {
      at::mm_out(c, a_op, w);
    } else {
      c.addmm_(a_op, w);
    }
  }

  template <typename scalar_t, typename acc_t>
  static void forward_pointwise(const LayerShape& s, int64_t b, const ForwardStep<scalar_t, acc_t>& p) {
    const auto stream = compat::current_stream();
    const dim3 grid(blocks_for(b * s.H)), block(kThreads);
    switch (s.cell) {
      case CellType::LSTM:
        compat::launch<lstm_forward_kernel<scalar_t, acc_t>>(grid, block, 0, stream, p, b, s.H, s.Hr, s.proj);
        break;
      case CellType::GRU:
        compat::launch<gru_forward_kernel<scalar_t, acc_t>>(grid, block, 0, stream, p, b, s.H);
        break;
      default:
        compat::launch<rnn_forward_kernel<scalar_t, acc_t>>(grid, block, 0, stream, p, b, s.H,
                                                              s.cell == CellType::RNN_RELU);
    }
  }

  template <typename scalar_t, typename acc_t>
  static void backward_pointwise(const LayerShape& s, int64_t b, const BackwardStep<scalar_t, acc_t>& p) {
    const auto stream = compat::current_stream();
    const dim3 grid(blocks_for(b * s.H)), block(kThreads);
    switch (s.cell) {
      case CellType::LSTM:
        compat::launch<lstm_backward_kernel<scalar_t, acc_t>>(grid, block, 0, stream, p, b, s.H, s.reserve_width());
        break;
      case CellType::GRU:
        compat::launch<gru_backward_kernel<scalar_t, acc_t>>(grid, block, 0, stream, p, b, s.H);
        break;
      default:
        compat::launch<rnn_backward_kernel<scalar_t, acc_t>>(grid, block, 0, stream, p, b, s.H,
                                                               s.cell == CellType::RNN_RELU);
    }
  }
};

}  // namespace
}  // namespace fusedrnn
