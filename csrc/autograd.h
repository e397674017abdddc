// The autograd of a layer_forward op, for every library that declares the layer ops
// (csrc/schemas.h): fusedrnn's (csrc/autograd.cpp) and the emulated CUDA backend's
// (csrc/emu/module.cpp). Ops names the library's two ops:
//   struct Ops { static constexpr const char* kForward = "ns::layer_forward", *kBackward = ...; };
// Registered in C++ (the Autograd key): a Python autograd formula costs tens of microseconds per
// call, which a recurrent cell stepped from Python, or a stack of small layers, would pay at every call.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>

#include <string>
#include <tuple>

namespace fusedrnn {
namespace autograd {

using at::Tensor;
using c10::optional;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using ForwardResult = std::tuple<Tensor, Tensor, Tensor, Tensor>;
using BackwardResult = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

template <class Ops>
ForwardResult call_layer_forward(c10::string_view cell, const Tensor& input, const optional<Tensor>& batch_sizes,
                                 const Tensor& hx, const optional<Tensor>& cx, const Tensor& w_ih,
                                 const Tensor& w_hh, const optional<Tensor>& b_ih, const optional<Tensor>& b_hh,
                                 const optional<Tensor>& w_hr, bool reverse, bool train) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow(Ops::kForward, "")
                       .template typed<ForwardResult(c10::string_view, const Tensor&, const optional<Tensor>&,
                                            const Tensor&, const optional<Tensor>&, const Tensor&, const Tensor&,
                                            const optional<Tensor>&, const optional<Tensor>&,
                                            const optional<Tensor>&, bool, bool)>();
  return op.call(cell, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, train);
}

template <class Ops>
BackwardResult call_layer_backward(c10::string_view cell, const Tensor& input, const optional<Tensor>& batch_sizes,
                                   const Tensor& hx, const optional<Tensor>& cx, const Tensor& w_ih,
                                   const Tensor& w_hh, const optional<Tensor>& b_ih,
                                   const optional<Tensor>& b_hh, const optional<Tensor>& w_hr, bool reverse,
                                   const Tensor& output, const Tensor& reserve,
                                   const optional<Tensor>& grad_output, const optional<Tensor>& grad_hy,
                                   const optional<Tensor>& grad_cy, bool need_input_grad, bool need_weight_grads) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow(Ops::kBackward, "")
                       .template typed<BackwardResult(c10::string_view, const Tensor&, const optional<Tensor>&,
                                             const Tensor&, const optional<Tensor>&, const Tensor&, const Tensor&,
                                             const optional<Tensor>&, const optional<Tensor>&,
                                             const optional<Tensor>&, bool, const Tensor&, const Tensor&,
                                             const optional<Tensor>&, const optional<Tensor>&,
                                             const optional<Tensor>&, bool, bool)>();
  return op.call(cell, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, output, reserve,
                 grad_output, grad_hy, grad_cy, need_input_grad, need_weight_grads);
}

inline optional<Tensor> opt(const Tensor& t) { return t.defined() ? optional<Tensor>(t) : c10::nullopt; }

inline bool requires_grad(const optional<Tensor>& t) { return t.has_value() && t->defined() && t->requires_grad(); }

template <class Ops>
class LayerFunction : public torch::autograd::Function<LayerFunction<Ops>> {
 public:
  static variable_list forward(AutogradContext* ctx, c10::string_view cell, const Tensor& input,
                               const optional<Tensor>& batch_sizes, const Tensor& hx, const optional<Tensor>& cx,
                               const Tensor& w_ih, const Tensor& w_hh, const optional<Tensor>& b_ih,
                               const optional<Tensor>& b_hh, const optional<Tensor>& w_hr, bool reverse,
                               bool train) {
    Tensor out, hy, cy, reserve;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      std::tie(out, hy, cy, reserve) =
          call_layer_forward<Ops>(cell, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, train);
    }
    const bool lstm = cell == "lstm";
    ctx->saved_data["cell"] = std::string(cell.data(), cell.size());
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["train"] = train;
    ctx->saved_data["batch_sizes"] = batch_sizes;
    ctx->saved_data["need_input_grad"] = input.requires_grad();
    ctx->saved_data["need_weight_grads"] = w_ih.requires_grad() || w_hh.requires_grad() || requires_grad(b_ih) ||
                                           requires_grad(b_hh) || requires_grad(w_hr);
    ctx->save_for_backward({input, hx, cx.value_or(Tensor()), w_ih, w_hh, b_ih.value_or(Tensor()),
                            b_hh.value_or(Tensor()), w_hr.value_or(Tensor()), out, reserve});
    ctx->mark_non_differentiable(lstm ? variable_list{reserve} : variable_list{cy, reserve});
    ctx->set_materialize_grads(false);  // unused outputs give no gradient, not zeros
    return {out, hy, cy, reserve};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(ctx->saved_data["train"].toBool(),
                "fusedrnn: backward through a layer run with train=False; run the forward with train=True "
                "(the functional API does so whenever gradients are needed)");
    const auto saved = ctx->get_saved_variables();
    const Tensor &input = saved[0], &hx = saved[1], &cx = saved[2], &w_ih = saved[3], &w_hh = saved[4];
    const Tensor &b_ih = saved[5], &b_hh = saved[6], &w_hr = saved[7], &out = saved[8], &reserve = saved[9];
    const std::string cell = ctx->saved_data["cell"].toStringRef();
    const auto batch_sizes = ctx->saved_data["batch_sizes"].toOptional<Tensor>();
    const bool lstm = cell == "lstm";
    auto [g_input, g_hx, g_cx, g_w_ih, g_w_hh, g_b_ih, g_b_hh, g_w_hr] = call_layer_backward<Ops>(
        cell, input, batch_sizes, hx, opt(cx), w_ih, w_hh, opt(b_ih), opt(b_hh), opt(w_hr),
        ctx->saved_data["reverse"].toBool(), out, reserve, opt(grads[0]), opt(grads[1]),
        lstm ? opt(grads[2]) : c10::nullopt, ctx->saved_data["need_input_grad"].toBool(),
        ctx->saved_data["need_weight_grads"].toBool());
    auto present = [](const Tensor& grad, const Tensor& of) { return of.defined() ? grad : Tensor(); };
    // One entry per forward argument: cell, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr,
    // reverse, train.
    return {Tensor(), present(g_input, input), Tensor(), g_hx, present(g_cx, cx), g_w_ih, g_w_hh,
            present(g_b_ih, b_ih), present(g_b_hh, b_hh), present(g_w_hr, w_hr), Tensor(), Tensor()};
  }
};

template <class Ops>
ForwardResult layer_forward_autograd(c10::string_view cell, const Tensor& input,
                                     const optional<Tensor>& batch_sizes, const Tensor& hx,
                                     const optional<Tensor>& cx, const Tensor& w_ih, const Tensor& w_hh,
                                     const optional<Tensor>& b_ih, const optional<Tensor>& b_hh,
                                     const optional<Tensor>& w_hr, bool reverse, bool train) {
  auto r = LayerFunction<Ops>::apply(cell, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, train);
  return {r[0], r[1], r[2], r[3]};
}

}  // namespace autograd
}  // namespace fusedrnn
