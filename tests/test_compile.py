"""torch.compile traces through fusedrnn's modules with fullgraph=True (torch.nn's recurrent modules
graph-break): the fake kernels and the autograd registration make the ops traceable."""
import pytest
import torch

import fusedrnn
from helpers import assert_rel


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.RNN])
def test_compile_fullgraph_forward_backward(cls):
    torch._dynamo.reset()
    m = cls(4, 6, 2, bidirectional=True, batch_first=True)
    x = torch.randn(3, 5, 4)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_c, _ = compiled(x1)
    out_e, _ = m(x2)
    assert_rel(out_c, out_e, 1e-6)
    grads_c = torch.autograd.grad(out_c.pow(2).sum(), [x1, *m.parameters()])
    grads_e = torch.autograd.grad(out_e.pow(2).sum(), [x2, *m.parameters()])
    for a, b in zip(grads_c, grads_e):
        assert_rel(a, b, 1e-6)


def _compile_counter():
    calls = []

    def backend(gm, example_inputs):
        calls.append(gm)
        return gm

    return backend, calls


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.RNN])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_dynamic_compile_does_not_recompile_for_new_batch_or_length(cls, bidirectional):
    torch._dynamo.reset()
    m = cls(4, 6, 2, bidirectional=bidirectional)
    backend, calls = _compile_counter()
    compiled = torch.compile(m, backend=backend, dynamic=True, fullgraph=True)
    for T, B in [(5, 3), (9, 7), (12, 2), (3, 16)]:
        x = torch.randn(T, B, 4, requires_grad=True)
        out_c, _ = compiled(x)
        out_e, _ = m(x)
        assert_rel(out_c, out_e, 1e-6)
        out_c.sum().backward()
    assert len(calls) == 1, f"{len(calls)} compiles for 4 shapes"


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.RNN])
def test_export_with_dynamic_batch_and_length(cls, recwarn):
    from torch.export import Dim

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cls(4, 6, 2, bidirectional=True)

        def forward(self, x):
            out, state = self.rnn(x)
            return out, state[0] if isinstance(state, tuple) else state

    model = Model().eval()
    T, B = Dim("T", min=2, max=1000), Dim("B", min=2, max=512)
    ep = torch.export.export(model, (torch.randn(5, 3, 4),), dynamic_shapes={"x": {0: T, 1: B}})
    assert any(n.target is torch.ops.fusedrnn.layer_forward.default for n in ep.graph.nodes)
    assert not [w for w in recwarn if "assigned during export" in str(w.message)]
    exported = ep.module()
    for shape in [(5, 3, 4), (11, 7, 4), (2, 2, 4)]:
        x = torch.randn(*shape)
        for a, b in zip(exported(x), model(x)):
            assert_rel(a, b, 1e-6)


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.RNN])
def test_export_packed_input_with_dynamic_sizes(cls):
    # A PackedSequence passed in as its tensors: the first batch size is read from batch_sizes as
    # an unbacked size, so other lengths and batch sizes run the same program.
    from torch.export import Dim
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cls(4, 6, 2, bidirectional=True)

        def forward(self, data, batch_sizes, sorted_indices, unsorted_indices):
            out, state = self.rnn(PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices))
            return out.data, state[0] if isinstance(state, tuple) else state

    model = Model().eval()
    example = pack_padded_sequence(torch.randn(5, 3, 4), torch.tensor([2, 5, 3]), enforce_sorted=False)
    N, T, B = Dim("N", min=2, max=100000), Dim("T", min=2, max=1000), Dim("B", min=2, max=1000)
    ep = torch.export.export(model, tuple(example), dynamic_shapes=({0: N}, {0: T}, {0: B}, {0: B}))
    for T_, lengths in [(9, [9, 1, 4, 9, 2, 7]), (3, [3, 3])]:
        packed = pack_padded_sequence(torch.randn(T_, len(lengths), 4), torch.tensor(lengths), enforce_sorted=False)
        for a, b in zip(ep.module()(*packed), model(*packed)):
            assert_rel(a, b, 1e-6)
