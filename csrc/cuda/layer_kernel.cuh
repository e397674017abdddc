// The CUDA backend of the layer ops, written once for both of its builds: nvcc compiles it for the
// GPU (layer_kernel.cu) and g++ for the CPU over the emulation layer (csrc/emu/layer_kernel.cpp),
// each after including its own compat.h (launches, streams, device guard). Nothing below depends
// on which.
//
// Two paths (FUSEDRNN_CUDA_PATH=standard|persistent forces one; by default the persistent one where
// it fits and the performance model expects it to pay, see persistent_kernel.cuh):
//   standard: the loop of csrc/layer_driver.h, per step a product (compat::gemm: cuBLAS called
//     directly with torch's handle on the current stream, no tensors built) and a fused pointwise
//     kernel, one thread per element of the step;
//   persistent: one cooperative launch runs every step of a layer and direction, W_hh resident in
//     the blocks' shared memory (persistent_kernel.cuh).
// Math in acc_t = at::opmath_type<scalar_t> (float for half / bfloat16 storage) through
// cell_math.h, per element in cell_elements.cuh for both paths. No atomics: every output element
// is written by exactly one thread.
#pragma once

#include "../cell_math.h"
#include "../layer_driver.h"
#include "cell_elements.cuh"
#include "persistent_kernel.cuh"

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

template <typename scalar_t, typename acc_t>
__global__ void lstm_forward_kernel(ForwardStep<scalar_t, acc_t> p, int64_t b, int64_t H, int64_t Hr, bool proj) {
  int64_t r, j;
  if (!element(b, H, r, j)) return;
  lstm_forward_element(p, r, j, H, Hr, proj, [&](int64_t o) { return p.hw[r * 4 * H + o]; });
}

template <typename scalar_t, typename acc_t>
__global__ void gru_forward_kernel(ForwardStep<scalar_t, acc_t> p, int64_t b, int64_t H) {
  int64_t r, j;
  if (!element(b, H, r, j)) return;
  gru_forward_element(p, r, j, H, [&](int64_t o) { return p.hw[r * 3 * H + o]; });
}

template <typename scalar_t, typename acc_t>
__global__ void rnn_forward_kernel(ForwardStep<scalar_t, acc_t> p, int64_t b, int64_t H, bool relu) {
  int64_t r, j;
  if (!element(b, H, r, j)) return;
  rnn_forward_element(p, r, j, H, relu, [&](int64_t o) { return p.hw[r * H + o]; });
}

template <typename scalar_t, typename acc_t>
__global__ void lstm_backward_kernel(BackwardStep<scalar_t, acc_t> p, int64_t b, int64_t H, int64_t RW) {
  int64_t r, j;
  if (!element(b, H, r, j)) return;
  lstm_backward_element(p, r, j, H, RW);
}

template <typename scalar_t, typename acc_t>
__global__ void gru_backward_kernel(BackwardStep<scalar_t, acc_t> p, int64_t b, int64_t H) {
  int64_t r, j;
  if (!element(b, H, r, j)) return;
  gru_backward_element(p, r, j, H);
}

template <typename scalar_t, typename acc_t>
__global__ void rnn_backward_kernel(BackwardStep<scalar_t, acc_t> p, int64_t b, int64_t H, bool relu) {
  int64_t r, j;
  if (!element(b, H, r, j)) return;
  rnn_backward_element(p, r, j, H, relu);
}

struct CudaBackend {
  using Guard = compat::DeviceGuard;
  static constexpr bool kRowBlocks = false;       // one loop over all rows; kernels span the rows
  // The persistent path (persistent_kernel.cuh), where it fits.
  static constexpr bool kOwnStepLoops = true;
  template <typename scalar_t, typename acc_t>
  static bool own_forward_loop(const ForwardCall<scalar_t, acc_t>& call, const Tensor& Whh) {
    return persistent::forward(call, Whh);
  }
  template <typename scalar_t, typename acc_t>
  static bool own_backward_loop(const BackwardCall<scalar_t, acc_t>& call, const Tensor& Whh) {
    return persistent::backward(call, Whh);
  }
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

  // Per-step products: compat::gemm (cuBLAS directly on the GPU, with torch's handle and stream;
  // ATen in the emulated build), on the weight as the call holds it, laid out once per call.
  template <typename scalar_t>
  struct StepWeight {
    StepWeight() = default;
    StepWeight(const LayerShape&, const Tensor& W, bool transpose_w)
        : weight(W.contiguous()), data(weight.data_ptr<scalar_t>()), transpose_w(transpose_w) {}
    Tensor weight;  // keeps a contiguous copy alive where the call's was not
    const scalar_t* data = nullptr;
    bool transpose_w = true;
  };
  // C = A @ op(W) + beta C. C in the storage type, or (the recurrent product) in the math type:
  // half / bfloat16 operands accumulated in float.
  template <typename scalar_t, typename out_t>
  static void gemm(int64_t m, int64_t n, int64_t k, const scalar_t* A, const StepWeight<scalar_t>& W, out_t beta,
                   out_t* C, const at::TensorOptions& opts) {
    if (m == 0 || n == 0) return;
    compat::gemm(W.transpose_w, m, n, k, A, W.data, beta, C, opts);
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
