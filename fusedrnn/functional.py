"""Functional recurrent layers: layers and directions stacked around the fused layer op.

Semantics follow torch.nn.RNN / LSTM / GRU (shared/CONTRACT.md): weights in torch.nn's flat
order (per layer, per direction: w_ih, w_hh[, b_ih, b_hh][, w_hr]), h_n indexed layer*D + dir,
bidirectional outputs concatenated [forward | reverse], dropout on every layer's output but the
last (training only), PackedSequence in and out with hx in the caller's order.
"""
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence

from . import _ops
from ._ops import CELLS, NUM_GATES, concat_directions

__all__ = ["rnn", "rnn_tanh", "rnn_relu", "lstm", "gru"]


def _needs_grad(tensors):
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def first_batch_size(batch_sizes):
    """A PackedSequence's batch size, batch_sizes[0]: an int, or while torch.export / torch.compile
    traces, a size read from the data (an unbacked SymInt) rather than the example's value."""
    if torch.compiler.is_compiling() or getattr(torch.compiler, "is_exporting", lambda: False)():
        b = batch_sizes[0].item()
        torch._check(b >= 1)
        return b
    return int(batch_sizes[0])


def autocast_dtype(cell, device_type, layer=True):
    """The dtype a fusedrnn layer (or, layer=False, a cell) runs in under autocast on this device,
    as torch.nn's does, or None: no autocast, or torch.nn keeps this one in its own dtype.

    CUDA: cuDNN's layers are on autocast's lower-precision list, so every layer runs in the
    autocast dtype (cells keep their dtype). CPU, as torch.nn 2.13 comes out (run under
    torch.autocast("cpu") per cell): LSTM layers in the autocast dtype (its oneDNN layer op is on
    the list), RNN layers and RNNCell too (they decompose into autocast's products and stay in
    their dtype), while GRU, GRUCell and LSTMCell come out in float32 (their gates meet the float32
    state), so those run in float32 here, all of it.
    """
    if device_type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device_type):
        return None
    if device_type == "cuda":
        return torch.get_autocast_dtype("cuda") if layer else None
    if cell in ("rnn_tanh", "rnn_relu") or (layer and cell == "lstm"):
        return torch.get_autocast_dtype("cpu")
    return None


def rnn(cell, input, hx, weights, num_layers=1, bias=True, bidirectional=False, dropout=0.0, training=False,
        batch_first=False):
    """Run a stack of recurrent layers.

    cell: "rnn_tanh", "rnn_relu", "lstm" or "gru".
    input: (T, B, I) tensor ((B, T, I) with batch_first) or a PackedSequence.
    hx: None (zeros), h0 of shape (num_layers * D, B, H_out), or for lstm a tuple (h0, c0).
    weights: flat list in torch.nn's `_flat_weights` order; LSTM projections are recognised by
        the extra w_hr per layer and direction.
    Returns (output, h_n), or for lstm (output, (h_n, c_n)); output is a PackedSequence when the
    input is one.
    """
    if cell not in CELLS:
        raise ValueError(f"fusedrnn: unknown cell {cell!r}; expected one of {', '.join(CELLS)}")
    if not (0.0 <= float(dropout) <= 1.0):
        raise ValueError(f"fusedrnn: dropout must be in [0, 1], got {dropout}")
    lstm = cell == "lstm"
    num_dirs = 2 if bidirectional else 1
    weights = list(weights)
    per_layer = len(weights) // (num_layers * num_dirs) if num_layers > 0 else 0
    base = 4 if bias else 2
    has_proj = lstm and per_layer == base + 1
    if num_layers < 1 or len(weights) != num_layers * num_dirs * per_layer or per_layer != base + has_proj:
        raise ValueError(
            f"fusedrnn: expected {num_layers * num_dirs * base} weights (or, for lstm with projections, "
            f"{num_layers * num_dirs * (base + 1)}) for num_layers={num_layers}, bidirectional={bidirectional}, "
            f"bias={bias}; got {len(weights)}"
        )

    packed = isinstance(input, PackedSequence)
    if packed:
        data, batch_sizes, sorted_indices, unsorted_indices = input
        batch = first_batch_size(batch_sizes)
    else:
        if input.dim() != 3:
            raise ValueError(f"fusedrnn: input must be 3-D, got {input.dim()}-D")
        data = input.transpose(0, 1) if batch_first else input
        batch_sizes = sorted_indices = unsorted_indices = None
        batch = data.size(1)

    w_hh0 = weights[1]
    hidden_size = w_hh0.size(0) // NUM_GATES[cell]
    out_size = w_hh0.size(1)
    h0, c0 = (hx if hx is not None else (None, None)) if lstm else (hx, None)
    if lstm and hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
        raise ValueError("fusedrnn: lstm expects hx as a tuple (h0, c0)")
    layers_dirs = num_layers * num_dirs
    if h0 is None:
        h0 = data.new_zeros(layers_dirs, batch, out_size)
    if lstm and c0 is None:
        c0 = data.new_zeros(layers_dirs, batch, hidden_size)
    for name, state, width in (("h0", h0, out_size), ("c0", c0, hidden_size)):
        if state is not None and tuple(state.shape) != (layers_dirs, batch, width):
            raise ValueError(f"fusedrnn: expected {name} of shape {(layers_dirs, batch, width)}, "
                             f"got {tuple(state.shape)}")
    if sorted_indices is not None:
        h0 = h0.index_select(1, sorted_indices)
        if lstm:
            c0 = c0.index_select(1, sorted_indices)

    dtype = autocast_dtype(cell, data.device.type)
    if dtype is not None:
        # As torch.nn under autocast: run in the autocast dtype; the casts are differentiable, so
        # gradients reach the float32 weights.
        data, h0 = data.to(dtype), h0.to(dtype)
        c0 = c0.to(dtype) if c0 is not None else None
        weights = [w.to(dtype) for w in weights]

    train = _needs_grad([data, h0, c0, *weights])
    layer_input = data
    h_n, c_n = [], []
    for layer in range(num_layers):
        outputs = []
        for direction in range(num_dirs):
            idx = layer * num_dirs + direction
            w = weights[idx * per_layer:(idx + 1) * per_layer]
            b_ih, b_hh = (w[2], w[3]) if bias else (None, None)
            w_hr = w[-1] if has_proj else None
            out, hy, cy, _ = _ops.layer_op(cell, layer_input, batch_sizes, h0[idx], c0[idx] if lstm else None,
                                           w[0], w[1], b_ih, b_hh, w_hr, direction == 1, train)
            outputs.append(out)
            h_n.append(hy)
            if lstm:
                c_n.append(cy)
        # torch.cat(outputs, -1), on the CPU into a buffer of fusedrnn's cache (no page faults).
        layer_input = outputs[0] if num_dirs == 1 else concat_directions(outputs[0], outputs[1])
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, dropout, training=True)

    h_n = torch.stack(h_n)
    c_n = torch.stack(c_n) if lstm else None
    if unsorted_indices is not None:
        h_n = h_n.index_select(1, unsorted_indices)
        if lstm:
            c_n = c_n.index_select(1, unsorted_indices)
    if packed:
        output = PackedSequence(layer_input, batch_sizes, sorted_indices, unsorted_indices)
    else:
        output = layer_input.transpose(0, 1) if batch_first else layer_input
    return (output, (h_n, c_n)) if lstm else (output, h_n)


def rnn_tanh(input, hx, weights, **kwargs):
    """Elman RNN with tanh; see `rnn` for the arguments."""
    return rnn("rnn_tanh", input, hx, weights, **kwargs)


def rnn_relu(input, hx, weights, **kwargs):
    """Elman RNN with relu; see `rnn` for the arguments."""
    return rnn("rnn_relu", input, hx, weights, **kwargs)


def lstm(input, hx, weights, **kwargs):
    """LSTM, with projections when weights carry w_hr; hx is None or (h0, c0); see `rnn`."""
    return rnn("lstm", input, hx, weights, **kwargs)


def gru(input, hx, weights, **kwargs):
    """GRU; see `rnn` for the arguments."""
    return rnn("gru", input, hx, weights, **kwargs)
