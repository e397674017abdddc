"""Exporting models that hold fusedrnn layers.

torch.export.export works as it is (the layer ops have fake kernels and symbolic sizes). For ONNX,
fusedrnn's layer op is translated into ONNX's own RNN / LSTM / GRU operators, one per layer and
direction:

    onnx_program = fusedrnn.export.to_onnx(model, (x,), dynamic_shapes=({0: "T", 1: "B"},))
    onnx_program.save("model.onnx")

or, calling torch.onnx.export yourself, pass
`custom_translation_table=fusedrnn.export.onnx_translation_table()`. Needs onnx and onnxscript
(and onnxruntime to run the result).

The translation minds ONNX's gate orders (LSTM i, o, f, c against torch's i, f, g, o; GRU z, r, h
against r, z, n), GRU's linear_before_reset=1 (torch's formula) and the two biases. What ONNX's
operators cannot express raises an error that says so rather than exporting something else: LSTM projections
(proj_size). Packed input (a PackedSequence made outside the model and passed in as its tensors,
or made inside it) becomes ONNX's padded layout with sequence_lens, each sequence's final state
taken at its own end in both directions, and the output packed back.
"""
import torch

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
# ONNX's gate order as indices into torch's gate blocks.
_ONNX_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}


class OnnxExportError(RuntimeError):
    """A fusedrnn layer that ONNX's operators cannot express."""


def _opset():
    from onnxscript import opset18
    return opset18


def _reorder(op, t, cell, axis):
    """The gate blocks of t (along axis) in ONNX's order."""
    if cell not in _ONNX_ORDER:
        return t
    parts = op.Split(t, num_outputs=_GATES[cell], axis=axis)
    return op.Concat(*[parts[i] for i in _ONNX_ORDER[cell]], axis=axis)


def _unpack(op, data, batch_sizes, hx):
    """A packed batch's rows [N, I] as ONNX's [T, B, I] (the rows past a sequence's end are copies of
    row 0, which sequence_lens keeps out), its lengths (int32 [B]) and where its rows are in the
    flattened [T * B] steps, to pack the output back. Row b of step t is row offsets[t] + b."""
    B = op.Shape(hx, start=0, end=1)  # the first step's rows: every sequence
    steps = op.Range(op.Constant(value_int=0), op.Squeeze(B, [0]), op.Constant(value_int=1))  # [B]
    active = op.Less(op.Unsqueeze(steps, [0]), op.Unsqueeze(batch_sizes, [1]))  # [T, B]
    offsets = op.CumSum(batch_sizes, op.Constant(value_int=0), exclusive=1)  # [T]
    rows = op.Where(active, op.Add(op.Unsqueeze(offsets, [1]), op.Unsqueeze(steps, [0])), op.Constant(value_int=0))
    padded = op.Reshape(op.Gather(data, op.Reshape(rows, [-1]), axis=0),
                        op.Concat(op.Shape(batch_sizes), B, op.Shape(data, start=1, end=2), axis=0))
    lengths = op.Cast(op.ReduceSum(op.Cast(active, to=7), [0], keepdims=0), to=6)  # int64 sums, int32 lengths
    where = op.Reshape(op.NonZero(op.Reshape(active, [-1])), [-1])  # step-major: the packed order
    return padded, lengths, where


def _layer_forward(cell, input, batch_sizes, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, train):
    op = _opset()
    if w_hr is not None:
        raise OnnxExportError("fusedrnn: an LSTM with proj_size cannot be exported to ONNX: ONNX's LSTM operator has "
                              "no projection")
    if cell not in _GATES:
        raise OnnxExportError(f"fusedrnn: unknown cell {cell!r}")
    hidden = w_hh.shape[0] // _GATES[cell]
    W = op.Unsqueeze(_reorder(op, w_ih, cell, 0), [0])
    R = op.Unsqueeze(_reorder(op, w_hh, cell, 0), [0])
    B = None
    if b_ih is not None:
        B = op.Unsqueeze(op.Concat(_reorder(op, b_ih, cell, 0), _reorder(op, b_hh, cell, 0), axis=0), [0])
    h0 = op.Unsqueeze(hx, [0])
    direction = "reverse" if reverse else "forward"
    empty = op.ConstantOfShape(op.Constant(value_ints=[0]))  # the unused outputs: [0] floats
    X, lengths, where = input, None, None
    if batch_sizes is not None:  # packed: padded steps with sequence_lens, each sequence's own end
        X, lengths, where = _unpack(op, input, batch_sizes, hx)
    c_n = None
    if cell == "lstm":
        Y, Y_h, Y_c = op.LSTM(X, W, R, B, lengths, h0, op.Unsqueeze(cx, [0]), hidden_size=hidden,
                              direction=direction)
        c_n = op.Squeeze(Y_c, [0])
    elif cell == "gru":
        Y, Y_h = op.GRU(X, W, R, B, lengths, h0, hidden_size=hidden, linear_before_reset=1, direction=direction)
    else:
        Y, Y_h = op.RNN(X, W, R, B, lengths, h0, hidden_size=hidden, direction=direction,
                        activations=["Relu" if cell == "rnn_relu" else "Tanh"])
    out = op.Squeeze(Y, [1])  # [T, B, H]
    if where is not None:  # back to the packed rows
        out = op.Gather(op.Reshape(out, op.Concat(op.Constant(value_ints=[-1]), op.Shape(out, start=2), axis=0)),
                        where, axis=0)
    return out, op.Squeeze(Y_h, [0]), c_n if c_n is not None else empty, empty


def _concat_directions(forward, reverse):
    return _opset().Concat(forward, reverse, axis=-1)


def onnx_translation_table():
    """torch.onnx.export's custom_translation_table entries for fusedrnn's ops."""
    return {torch.ops.fusedrnn.layer_forward.default: _layer_forward,
            torch.ops.fusedrnn.concat_directions.default: _concat_directions}


def to_onnx(model, args, **kwargs):
    """torch.onnx.export(model, args, dynamo=True, ...) with fusedrnn's translations added to any
    custom_translation_table given. Returns the ONNXProgram."""
    table = dict(onnx_translation_table())
    table.update(kwargs.pop("custom_translation_table", None) or {})
    return torch.onnx.export(model, args, dynamo=True, custom_translation_table=table, **kwargs)
