"""CUDA kernels: the CPU suite's checks on the GPU, against torch.nn on CUDA (cuDNN off: IEEE
float32), float64 references, half/bfloat16 against torch's own error, determinism, CPU agreement.

Skipped, with the reason shown by `pytest -rs`, where there is no GPU; they run on the GPU machine.
"""
import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
import fusedrnn.functional as FR
from helpers import CELLS, assert_rel, make_nn, random_lengths, rel_err

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

T, B, I, H = 6, 5, 4, 8


@pytest.fixture(autouse=True)
def _ieee_float32():
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def run(cell, dtype, device, packed, weights, x, lengths, h0, c0, num_layers, bidirectional, reference=None):
    """Outputs and gradients of fusedrnn (reference=None) or of a torch.nn module."""
    xi = x.to(device, dtype).requires_grad_()
    hi = h0.to(device, dtype).requires_grad_()
    ci = c0.to(device, dtype).requires_grad_()
    ws = [w.detach().to(device, dtype).requires_grad_() for w in weights]
    inp = pack_padded_sequence(xi, lengths, enforce_sorted=False) if packed else xi
    hx = (hi, ci) if cell == "lstm" else hi
    if reference is None:
        out, state = FR.rnn(cell, inp, hx, ws, num_layers=num_layers, bidirectional=bidirectional)
        params = ws
    else:
        m = reference.to(device, dtype)
        with torch.no_grad():
            for p, w in zip(m.parameters(), ws):
                p.copy_(w)
        out, state = m(inp, hx)
        params = list(m.parameters())
    out = out.data if packed else out
    states = list(state) if cell == "lstm" else [state]
    loss = sum((t.float() * torch.linspace(-1, 1, t.numel(), device=device).view_as(t)).sum() for t in [out, *states])
    leaves = [xi, hi] + ([ci] if cell == "lstm" else []) + params
    grads = torch.autograd.grad(loss, leaves)
    return [t.detach() for t in [out, *states]] + list(grads)


def problem(cell, num_layers=2, bidirectional=True):
    ref = make_nn(cell, I, H, num_layers=num_layers, bidirectional=bidirectional)
    D = 2 if bidirectional else 1
    x = torch.randn(T, B, I, dtype=torch.float64)
    h0 = torch.randn(num_layers * D, B, H, dtype=torch.float64)
    c0 = torch.randn(num_layers * D, B, H, dtype=torch.float64)
    return ref, x, random_lengths(B, T), h0, c0


COMBOS = list(itertools.product(CELLS, (1, 2), (False, True), ("dense", "packed")))


@pytest.mark.parametrize("cell,num_layers,bidirectional,layout", COMBOS)
def test_parity_float64_and_float32(cell, num_layers, bidirectional, layout):
    ref, x, lengths, h0, c0 = problem(cell, num_layers, bidirectional)
    packed = layout == "packed"
    args = (ref._flat_weights, x, lengths, h0, c0, num_layers, bidirectional)
    expected = run(cell, torch.float64, "cpu", packed, *args, reference=ref)
    got64 = run(cell, torch.float64, "cuda", packed, *args)
    got32 = run(cell, torch.float32, "cuda", packed, *args)
    with torch.backends.cudnn.flags(enabled=False):
        torch32 = run(cell, torch.float32, "cuda", packed, *args, reference=make_nn(cell, I, H, num_layers=num_layers,
                                                                                 bidirectional=bidirectional))
    for a, b, c, e in zip(got64, got32, torch32, expected):
        assert_rel(a.cpu(), e, 1e-10, "float64")
        assert_rel(b.cpu(), e, 1e-5, "float32 vs float64")
        assert_rel(b, c, 1e-5, "float32 vs torch.nn (cuDNN off)")


@pytest.mark.parametrize("layout", ["dense", "packed"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_cuda(cell, reverse, layout):
    G = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}[cell]
    dev, f64 = "cuda", torch.float64
    if layout == "packed":
        batch_sizes = torch.tensor([3, 3, 2, 1])
        x = torch.randn(9, 3, dtype=f64, device=dev, requires_grad=True)
        b = 3
    else:
        batch_sizes, b = None, 2
        x = torch.randn(4, 2, 3, dtype=f64, device=dev, requires_grad=True)
    t = lambda *s: (torch.randn(*s, dtype=f64, device=dev) * 0.5).requires_grad_()
    hx, cx = t(b, 4), t(b, 4)
    w = [t(G * 4, 3), t(G * 4, 4), t(G * 4), t(G * 4)]

    def f(x, hx, cx, *w):
        out, hy, cy, _ = fusedrnn.layer_forward(cell, x, batch_sizes, hx, cx if cell == "lstm" else None, *w,
                                                None, reverse, True)
        return (out, hy, cy) if cell == "lstm" else (out, hy)

    assert torch.autograd.gradcheck(f, (x, hx, cx, *w), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("cell", CELLS)
def test_low_precision_within_twice_torch_error(cell, dtype):
    ref, x, lengths, h0, c0 = problem(cell)
    args = (ref._flat_weights, x, lengths, h0, c0, 2, True)
    expected = run(cell, torch.float64, "cpu", False, *args, reference=ref)
    ours = run(cell, dtype, "cuda", False, *args)
    try:
        theirs = run(cell, dtype, "cuda", False, *args, reference=make_nn(cell, I, H, num_layers=2, bidirectional=True))
    except RuntimeError:  # no cuDNN kernel for this dtype: torch's native CUDA loop
        with torch.backends.cudnn.flags(enabled=False):
            theirs = run(cell, dtype, "cuda", False, *args, reference=make_nn(cell, I, H, num_layers=2,
                                                                               bidirectional=True))
    for k, (a, b, e) in enumerate(zip(ours, theirs, expected)):
        assert a.dtype == dtype or k >= 3
        ours_err, torch_err = rel_err(a.cpu(), e), rel_err(b.cpu(), e)
        assert ours_err <= 2 * torch_err + 1e-7, f"tensor {k}: fusedrnn {ours_err:.2e} vs torch {torch_err:.2e}"


@pytest.mark.parametrize("cell", CELLS)
def test_deterministic_cuda(cell):
    ref, x, lengths, h0, c0 = problem(cell)
    args = (ref._flat_weights, x, lengths, h0, c0, 2, True)
    first = run(cell, torch.float32, "cuda", True, *args)
    second = run(cell, torch.float32, "cuda", True, *args)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cell", CELLS)
def test_cpu_and_cuda_agree(cell):
    ref, x, lengths, h0, c0 = problem(cell)
    args = (ref._flat_weights, x, lengths, h0, c0, 2, True)
    for a, b in zip(run(cell, torch.float32, "cpu", True, *args), run(cell, torch.float32, "cuda", True, *args)):
        assert_rel(b.cpu(), a, 1e-5)


@pytest.mark.parametrize("cls", [fusedrnn.RNN, fusedrnn.LSTM, fusedrnn.GRU])
def test_modules_on_cuda_and_non_contiguous_input(cls):
    m = cls(I, H, 2, batch_first=True, bidirectional=True).cuda()
    ref = {fusedrnn.RNN: torch.nn.RNN, fusedrnn.LSTM: torch.nn.LSTM, fusedrnn.GRU: torch.nn.GRU}[cls](
        I, H, 2, batch_first=True, bidirectional=True).cuda()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(T, I, B, device="cuda").transpose(1, 2).transpose(0, 1)  # (B, T, I), not contiguous
    assert not x.is_contiguous()
    with torch.backends.cudnn.flags(enabled=False):
        expected = ref(x)[0]
    assert_rel(m(x)[0], expected, 1e-5)


def test_device_mismatch_is_a_clear_error():
    m = fusedrnn.LSTM(I, H).cuda()
    with pytest.raises(RuntimeError, match="Input and parameter tensors are not at the same device"):
        m(torch.randn(T, B, I))
    w = [p.detach() for p in m._flat_weights]
    with pytest.raises(RuntimeError, match="fusedrnn: hx is on cpu but input is on cuda"):
        fusedrnn.layer_forward("lstm", torch.randn(T, B, I, device="cuda"), None, torch.zeros(B, H),
                               torch.zeros(B, H, device="cuda"), *w, None, False, False)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU])
def test_autocast_runs_in_the_autocast_dtype(cls, dtype):
    m = cls(I, H, 2).cuda()
    ref = {fusedrnn.LSTM: torch.nn.LSTM, fusedrnn.GRU: torch.nn.GRU}[cls](I, H, 2).cuda()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(T, B, I, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        out = m(x)[0]
        expected = ref(x)[0]
    assert out.dtype == expected.dtype == dtype
    exact = ref.double()(x.double())[0]
    assert rel_err(out, exact) <= 2 * rel_err(expected, exact) + 1e-7
    out.float().sum().backward()
    assert m.weight_ih_l0.grad is not None and m.weight_ih_l0.grad.dtype == torch.float32
