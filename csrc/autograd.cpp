// Autograd of fusedrnn's ops, registered in C++ for every backend (the Autograd key): the layer
// op's formula is csrc/autograd.h (shared with the emulated CUDA backend), concat_directions's below.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "autograd.h"

namespace fusedrnn {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FusedOps {
  static constexpr const char* kForward = "fusedrnn::layer_forward";
  static constexpr const char* kBackward = "fusedrnn::layer_backward";
};

// concat_directions: the gradient of each part is its slice of the output's gradient.
class ConcatFunction : public torch::autograd::Function<ConcatFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& forward, const Tensor& reverse) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("fusedrnn::concat_directions", "")
                         .typed<Tensor(const Tensor&, const Tensor&)>();
    // Symbolic sizes (sym_size, narrow_symint): under torch.compile / torch.export size() would
    // specialize every dimension of a fake tensor to its example value.
    ctx->saved_data["split"] = forward.dim() > 0 ? forward.sym_size(-1) : c10::SymInt(0);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(forward, reverse);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor()};
    const c10::SymInt split = ctx->saved_data["split"].toSymInt();
    return {g.narrow_symint(-1, 0, split), g.narrow_symint(-1, split, g.sym_size(-1) - split)};
  }
};

Tensor concat_directions_autograd(const Tensor& forward, const Tensor& reverse) {
  return ConcatFunction::apply(forward, reverse);
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, Autograd, m) {
  m.impl("layer_forward", &autograd::layer_forward_autograd<FusedOps>);
  m.impl("concat_directions", &concat_directions_autograd);
}

}  // namespace fusedrnn
