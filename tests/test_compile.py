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
