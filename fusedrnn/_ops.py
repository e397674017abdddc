"""The fusedrnn::layer_forward / layer_backward ops: loading and fake kernels.

The schemas live in csrc/schemas.h, the kernels in csrc/cpu and csrc/cuda, and the autograd
formula (calling layer_backward) in csrc/autograd.h. Here the ops get fake (meta) kernels, which
`torch.library.opcheck` and `torch.compile` need to trace them without running them.
"""
import torch

from . import _C  # noqa: F401  (loading the library registers the ops)

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
NUM_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

layer_forward = torch.ops.fusedrnn.layer_forward
layer_backward = torch.ops.fusedrnn.layer_backward
concat_directions = torch.ops.fusedrnn.concat_directions
# The layer op the functional API and the modules call: fusedrnn's, or the emulated CUDA backend's
# (fusedrnn_emu::layer_forward) while fusedrnn.emulation is enabled.
layer_op = layer_forward


def reserve_width(cell, hidden_size, proj):
    """Columns per row of the reserve: must match LayerShape::reserve_width in C++."""
    if cell == "lstm":
        return 5 * hidden_size + (hidden_size if proj else 0)
    if cell == "gru":
        return 4 * hidden_size
    return 0


def _layer_forward_fake(cell, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, train):
    hidden_size = w_hh.shape[0] // NUM_GATES[cell]
    out_size = w_hh.shape[1]
    rows = input.shape[0] if input.dim() == 2 else input.shape[0] * input.shape[1]
    output = input.new_empty((*input.shape[:-1], out_size))
    hy = hx.new_empty(hx.shape)
    cy = cx.new_empty(cx.shape) if cell == "lstm" else input.new_empty((0,))
    # The reserve is kept in the math type: float32 for half / bfloat16 storage.
    acc = torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype
    reserve = input.new_empty((rows if train else 0, reserve_width(cell, hidden_size, w_hr is not None)), dtype=acc)
    return output, hy, cy, reserve


def _layer_backward_fake(cell, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, output,
                         reserve, grad_output, grad_hy, grad_cy, need_input_grad, need_weight_grads):
    def like(t, wanted=True):
        return t.new_empty(t.shape) if (t is not None and wanted) else input.new_empty((0,))

    return (
        like(input, need_input_grad),
        like(hx),
        like(cx if cell == "lstm" else None),
        like(w_ih, need_weight_grads),
        like(w_hh, need_weight_grads),
        like(b_ih, need_weight_grads),
        like(b_hh, need_weight_grads),
        like(w_hr, need_weight_grads),
    )


def register_fakes(namespace):
    """Fake kernels for the layer ops of a library declared with csrc/schemas.h."""
    torch.library.register_fake(f"{namespace}::layer_forward")(_layer_forward_fake)
    torch.library.register_fake(f"{namespace}::layer_backward")(_layer_backward_fake)


register_fakes("fusedrnn")


@torch.library.register_fake("fusedrnn::concat_directions")
def _concat_directions_fake(forward, reverse):
    torch._check(forward.dim() >= 1 and forward.dim() == reverse.dim(),
                 lambda: "fusedrnn: concat_directions expects two tensors of the same number of dimensions")
    torch._check(forward.shape[:-1] == reverse.shape[:-1],
                 lambda: "fusedrnn: concat_directions expects the same sizes but in the last dimension")
    return forward.new_empty((*forward.shape[:-1], forward.shape[-1] + reverse.shape[-1]))
