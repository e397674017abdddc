"""ONNX export (fusedrnn.export): fusedrnn's layer op becomes ONNX's RNN / LSTM / GRU operators, and
ONNX Runtime runs the graph with eager's outputs, at other batch sizes and lengths than the
example's, dense and packed; what ONNX cannot express is a clear error."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from helpers import assert_rel

pytest.importorskip("onnxscript")  # the README's test command installs onnx, onnxscript, onnxruntime
ort = pytest.importorskip("onnxruntime")
import fusedrnn.export as fexport  # noqa: E402


class Wrap(torch.nn.Module):
    def __init__(self, rnn, with_hx):
        super().__init__()
        self.rnn, self.with_hx = rnn, with_hx

    def forward(self, x, *hx):
        state = (tuple(hx) if len(hx) == 2 else hx[0]) if self.with_hx else None
        out, st = self.rnn(x, state)
        return (out, *st) if isinstance(st, tuple) else (out, st)


def session(program, tmp_path):
    path = str(tmp_path / "model.onnx")
    program.save(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


CASES = [("lstm", {}), ("gru", {}), ("rnn_tanh", {}), ("rnn_relu", {"nonlinearity": "relu"}),
         ("lstm", {"bias": False}), ("gru", {"batch_first": True})]


@pytest.mark.parametrize("cell,kwargs", CASES, ids=[f"{c}-{'-'.join(k) or 'default'}" for c, k in CASES])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)], ids=["1-uni", "2-bi"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["no-hx", "hx"])
def test_onnx_runtime_gives_eagers_outputs(tmp_path, cell, kwargs, layers, bidirectional, with_hx):
    from torch.export import Dim

    torch.manual_seed(0)
    cls = {"lstm": fusedrnn.LSTM, "gru": fusedrnn.GRU}.get(cell, fusedrnn.RNN)
    model = Wrap(cls(4, 6, layers, bidirectional=bidirectional, **kwargs), with_hx).eval()
    bf = kwargs.get("batch_first", False)
    L = layers * (2 if bidirectional else 1)
    B, T = Dim("B", min=2, max=256), Dim("T", min=2, max=256)

    def example(t, b):
        x = torch.randn(b, t, 4) if bf else torch.randn(t, b, 4)
        hx = [torch.randn(L, b, 6) for _ in range(2 if cell == "lstm" else 1)] if with_hx else []
        return x, hx

    x, hx = example(5, 3)
    shapes = ({0: B, 1: T} if bf else {0: T, 1: B},) + ((tuple({1: B} for _ in hx),) if hx else ())  # *hx: one entry
    program = fexport.to_onnx(model, (x, *hx), dynamic_shapes=shapes)
    ops = {n.op_type for n in program.model.graph}
    assert {"lstm": "LSTM", "gru": "GRU"}.get(cell, "RNN") in ops
    sess = session(program, tmp_path)
    for t, b in [(5, 3), (11, 7), (2, 2)]:
        x, hx = example(t, b)
        feeds = {i.name: v.numpy() for i, v in zip(sess.get_inputs(), [x, *hx])}
        got = sess.run(None, feeds)
        with torch.no_grad():
            expected = model(x, *hx)
        assert len(got) == len(expected)
        for a, e in zip(got, expected):
            assert_rel(torch.from_numpy(a), e, 1e-5)


class PackedModel(torch.nn.Module):
    """Takes a PackedSequence as its four tensors (torch.export's inputs are tensors)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, data, batch_sizes, sorted_indices, unsorted_indices):
        from torch.nn.utils.rnn import PackedSequence

        out, state = self.rnn(PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices))
        return (out.data, *state) if isinstance(state, tuple) else (out.data, state)


def packed_dims():
    from torch.export import Dim

    N, T, B = Dim("N", min=2, max=100000), Dim("T", min=2, max=1000), Dim("B", min=2, max=1000)
    return ({0: N}, {0: T}, {0: B}, {0: B})


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)], ids=["1-uni", "2-bi"])
def test_packed_input_runs_with_sequence_lens(tmp_path, cell, layers, bidirectional):
    # Each sequence ends at its own length in both directions: ONNX's sequence_lens, the padded
    # steps gathered from the packed rows and the output packed back.
    torch.manual_seed(1)
    cls = {"lstm": fusedrnn.LSTM, "gru": fusedrnn.GRU}.get(cell, fusedrnn.RNN)
    kwargs = {"nonlinearity": "relu"} if cell == "rnn_relu" else {}
    model = PackedModel(cls(4, 6, layers, bidirectional=bidirectional, **kwargs)).eval()
    example = pack_padded_sequence(torch.randn(5, 3, 4), torch.tensor([2, 5, 3]), enforce_sorted=False)
    program = fexport.to_onnx(model, tuple(example), dynamic_shapes=packed_dims())
    sess = session(program, tmp_path)
    for T, lengths in [(9, [9, 1, 4, 9, 2, 7]), (3, [3, 3]), (6, [1, 6, 2])]:
        packed = pack_padded_sequence(torch.randn(T, len(lengths), 4), torch.tensor(lengths), enforce_sorted=False)
        got = sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), packed)})
        with torch.no_grad():
            expected = model(*packed)
        for a, e in zip(got, expected):
            assert_rel(torch.from_numpy(a), e, 1e-5)


def test_lstm_projections_are_a_clear_error():
    model = Wrap(fusedrnn.LSTM(4, 6, proj_size=3), False).eval()
    with pytest.raises(Exception, match="proj_size cannot be exported to ONNX"):
        fexport.to_onnx(model, (torch.randn(5, 3, 4),))
