// CUDA backend of the layer ops: the fused pointwise passes as kernels, one thread per element of a
// step, math in acc_t = at::opmath_type<scalar_t> (float for half / bfloat16 storage) through
// cell_math.h. The loop around them (GEMMs through ATen / cuBLAS on the current stream) is
// csrc/layer_driver.h. No atomics: every output element is written by exactly one thread.
#include "../cell_math.h"
#include "../layer_driver.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/from_blob.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

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

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t pre_activation(const ForwardStep<scalar_t, acc_t>& p, int64_t r, int64_t GH,
                                                int64_t o) {
  return static_cast<acc_t>(p.xw[r * p.xw_ld + o]) + static_cast<acc_t>(p.hw[r * GH + o]) +
         static_cast<acc_t>(p.bhh[o]);
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
  const acc_t x_n = static_cast<acc_t>(p.xw[r * p.xw_ld + 2 * H + j]);
  const acc_t h_n = static_cast<acc_t>(p.hw[r * GH + 2 * H + j]) + static_cast<acc_t>(p.bhh[2 * H + j]);
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
  using Guard = c10::cuda::CUDAGuard;
  static constexpr bool kFoldInputBias = false;  // b_ih goes into the input projection (addmm)
  static constexpr bool kRowBlocks = false;       // one loop over all rows; kernels span the rows
  static constexpr bool kUnitSplit = false;
  static constexpr bool kStepInputProjection = false;  // one input projection for all rows
  static constexpr bool kWeightGrad = false;           // weight gradients through cuBLAS (the driver's)
  // Large buffers: PyTorch's caching allocator already reuses them.
  static Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) { return at::empty(sizes, options); }

  static void check(const Tensor& input) {
    TORCH_CHECK(input.is_cuda(), "fusedrnn: the CUDA kernel got a tensor on ", input.device());
    const auto t = input.scalar_type();
    TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16,
                "fusedrnn: the CUDA kernels support float32, float64, float16 and bfloat16, got ", t);
  }

  template <typename F>
  static void dispatch(at::ScalarType type, const F& f) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, type, "fusedrnn_layer_cuda", [&] { f(scalar_t(0)); });
  }

  static void input_projection(Tensor& xw, const Tensor& X, const Tensor& W) { at::mm_out(xw, X, W.t()); }
  static Tensor input_grad(const Tensor& dG, const Tensor& W) { return at::mm(dG, W); }

  // Per-step products through cuBLAS (ATen), on borrowed device memory; the weight as it is.
  template <typename scalar_t>
  struct StepWeight {
    StepWeight() = default;
    StepWeight(const LayerShape&, const Tensor& W, bool transpose_w)
        : w(W.data_ptr<scalar_t>()), transpose_w(transpose_w) {}
    const scalar_t* w = nullptr;
    bool transpose_w = true;
  };
  template <typename scalar_t>
  static void gemm(int64_t m, int64_t n, int64_t k, const scalar_t* A, const StepWeight<scalar_t>& W,
                   scalar_t beta, scalar_t* C, const at::TensorOptions& opts) {
    if (m == 0 || n == 0) return;
    const Tensor a = at::from_blob(const_cast<scalar_t*>(A), {m, k}, opts);
    const Tensor w = W.transpose_w ? at::from_blob(const_cast<scalar_t*>(W.w), {n, k}, opts).t()
                                   : at::from_blob(const_cast<scalar_t*>(W.w), {k, n}, opts);
    Tensor c = at::from_blob(C, {m, n}, opts);
    if (static_cast<float>(beta) == 0.f) {
      at::mm_out(c, a, w);
    } else {
      c.addmm_(a, w);
    }
  }

  template <typename scalar_t, typename acc_t>
  static void forward_pointwise(const LayerShape& s, int64_t b, const ForwardStep<scalar_t, acc_t>& p) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    const unsigned blocks = blocks_for(b * s.H);
    switch (s.cell) {
      case CellType::LSTM:
        lstm_forward_kernel<<<blocks, kThreads, 0, stream>>>(p, b, s.H, s.Hr, s.proj);
        break;
      case CellType::GRU:
        gru_forward_kernel<<<blocks, kThreads, 0, stream>>>(p, b, s.H);
        break;
      default:
        rnn_forward_kernel<<<blocks, kThreads, 0, stream>>>(p, b, s.H, s.cell == CellType::RNN_RELU);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <typename scalar_t, typename acc_t>
  static void backward_pointwise(const LayerShape& s, int64_t b, const BackwardStep<scalar_t, acc_t>& p) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    const unsigned blocks = blocks_for(b * s.H);
    switch (s.cell) {
      case CellType::LSTM:
        lstm_backward_kernel<<<blocks, kThreads, 0, stream>>>(p, b, s.H, s.reserve_width());
        break;
      case CellType::GRU:
        gru_backward_kernel<<<blocks, kThreads, 0, stream>>>(p, b, s.H);
        break;
      default:
        rnn_backward_kernel<<<blocks, kThreads, 0, stream>>>(p, b, s.H, s.cell == CellType::RNN_RELU);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CUDA, m) {
  m.impl("layer_forward", &layer_forward_impl<CudaBackend>);
  m.impl("layer_backward", &layer_backward_impl<CudaBackend>);
}

}  // namespace fusedrnn
