"""The CUDA kernels against torch.nn, float64 references, torch's own half/bfloat16 error, determinism
and the CPU backend, on each of the backend's two paths (FUSEDRNN_CUDA_PATH: the standard per-step
kernels, and the persistent kernels, one cooperative launch a layer and direction) and two targets:
  - cuda: the GPU build, on a GPU (skipped, with the reason shown by `pytest -rs`, where there is none);
  - emu:  the same kernel source compiled over fusedrnn's CUDA emulation layer (fusedrnn.emulation),
          on CPU tensors, everywhere the test command has built it (FUSEDRNN_EMU=1; it fails, not
          skips, when FUSEDRNN_EXPECT_EMU=1 and the build is missing).
Sizes make a step span several blocks of 256 threads, the last one partial (batch 9 x hidden 37);
on the persistent path the emulated device has 8 SMs, so hidden 37 is 8 slices of 5 units and one
of 2. float64 has no persistent kernel (it runs the standard path on both).
"""
import contextlib
import itertools
from dataclasses import dataclass

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
import fusedrnn.emulation as emulation
import fusedrnn.functional as FR
from fusedrnn import _ops
from helpers import CELLS, assert_rel, make_nn, random_lengths, rel_err, require_emulation

T, B, I, H = 6, 9, 5, 37
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


@dataclass
class Target:
    name: str
    device: str  # where the tensors live
    layer_forward: object  # the op the kernels are registered under
    path: str = "standard"


EMU_PERSISTENT_SMS = 8


@pytest.fixture
def emu(monkeypatch):
    """The emulated CUDA backend on its standard path, enabled for the test, threads in order."""
    require_emulation()
    monkeypatch.setenv("FUSEDRNN_CUDA_PATH", "standard")
    with emulation.enabled(seed=0):
        yield Target("emu", "cpu", torch.ops.fusedrnn_emu.layer_forward)


@pytest.fixture
def emu_persistent(monkeypatch):
    """The emulated CUDA backend on its persistent path, on an emulated device of 8 SMs."""
    require_emulation()
    monkeypatch.setenv("FUSEDRNN_CUDA_PATH", "persistent")
    with emulation.enabled(seed=0, sm_count=EMU_PERSISTENT_SMS):
        yield Target("emu-persistent", "cpu", torch.ops.fusedrnn_emu.layer_forward, "persistent")


@pytest.fixture(params=["cuda", "cuda-persistent", "emu", "emu-persistent"])
def target(request, monkeypatch):
    if request.param.startswith("cuda"):
        if not torch.cuda.is_available():
            pytest.skip("no CUDA GPU on this machine")
        path = "persistent" if request.param.endswith("persistent") else "standard"
        monkeypatch.setenv("FUSEDRNN_CUDA_PATH", path)
        yield Target(request.param, "cuda", torch.ops.fusedrnn.layer_forward, path)
    else:
        yield request.getfixturevalue(request.param.replace("-", "_"))


@pytest.fixture(autouse=True)
def _ieee_float32():
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@contextlib.contextmanager
def native_kernels():
    """fusedrnn's own kernels for the tensors' device, even while the emulation is enabled."""
    before = _ops.layer_op
    _ops.layer_op = _ops.layer_forward
    try:
        yield
    finally:
        _ops.layer_op = before


def run(cell, dtype, device, packed, weights, x, lengths, h0, c0, num_layers, bidirectional, bias=True,
        reference=None):
    """Outputs and gradients of fusedrnn (reference=None) or of a torch.nn module; h0 None: no hx."""
    xi = x.to(device, dtype).requires_grad_()
    hi = h0.to(device, dtype).requires_grad_() if h0 is not None else None
    ci = c0.to(device, dtype).requires_grad_() if h0 is not None else None
    ws = [w.detach().to(device, dtype).requires_grad_() for w in weights]
    inp = pack_padded_sequence(xi, lengths, enforce_sorted=False) if packed else xi
    hx = None if h0 is None else ((hi, ci) if cell == "lstm" else hi)
    if reference is None:
        out, state = FR.rnn(cell, inp, hx, ws, num_layers=num_layers, bias=bias, bidirectional=bidirectional)
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
    leaves = [xi] + ([hi] + ([ci] if cell == "lstm" else []) if h0 is not None else []) + params
    grads = torch.autograd.grad(loss, leaves)
    return [t.detach() for t in [out, *states]] + list(grads)


def problem(cell, num_layers=2, bidirectional=True, bias=True):
    ref = make_nn(cell, I, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    D = 2 if bidirectional else 1
    x = torch.randn(T, B, I, dtype=torch.float64)
    h0 = torch.randn(num_layers * D, B, H, dtype=torch.float64)
    c0 = torch.randn(num_layers * D, B, H, dtype=torch.float64)
    return ref, x, random_lengths(B, T), h0, c0


def torch_reference(cell, **kwargs):
    """torch.nn, and the flags to run it with: on CUDA cuDNN off (IEEE float32)."""
    return make_nn(cell, I, H, **kwargs), torch.backends.cudnn.flags(enabled=False)


COMBOS = list(itertools.product(CELLS, (1, 2), (False, True), (True, False), ("dense", "packed"), ("h0", "no_h0")))


@pytest.mark.parametrize("cell,num_layers,bidirectional,bias,layout,h0", COMBOS)
def test_parity_float64_and_float32(target, cell, num_layers, bidirectional, bias, layout, h0):
    ref, x, lengths, h, c = problem(cell, num_layers, bidirectional, bias)
    if h0 == "no_h0":
        h = c = None
    packed = layout == "packed"
    args = (ref._flat_weights, x, lengths, h, c, num_layers, bidirectional, bias)
    expected = run(cell, torch.float64, "cpu", packed, *args, reference=ref)
    got64 = run(cell, torch.float64, target.device, packed, *args)
    got32 = run(cell, torch.float32, target.device, packed, *args)
    nn32, flags = torch_reference(cell, num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    with flags:
        torch32 = run(cell, torch.float32, target.device, packed, *args, reference=nn32)
    assert len(got64) == len(expected)
    for a, b, c_, e in zip(got64, got32, torch32, expected):
        assert_rel(a.cpu(), e, 1e-10, "float64")
        assert_rel(b.cpu(), e, 1e-5, "float32 vs float64")
        assert_rel(b, c_, 1e-5, "float32 vs torch.nn")


@pytest.mark.parametrize("layout", ["dense", "packed"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck(target, cell, reverse, layout):
    G = GATES[cell]
    dev, f64 = target.device, torch.float64
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
        out, hy, cy, _ = target.layer_forward(cell, x, batch_sizes, hx, cx if cell == "lstm" else None, *w, None,
                                              reverse, True)
        return (out, hy, cy) if cell == "lstm" else (out, hy)

    assert torch.autograd.gradcheck(f, (x, hx, cx, *w), eps=1e-6, atol=1e-8, rtol=1e-6)


def rel_fro(actual, expected):
    """||actual - expected|| / ||expected|| (Frobenius)."""
    expected = expected.to(torch.float64)
    return ((actual.to(torch.float64) - expected).norm() / expected.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("layout", ["dense", "packed"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("cell", CELLS)
def test_low_precision_within_twice_torch_error(target, cell, dtype, layout):
    """Half / bfloat16 storage: fusedrnn's error against float64 at most twice torch.nn's own at the
    same precision; outputs and final states element by element (max norm), gradients in the
    Frobenius norm (in max norm one element near a rounding tie decides it; over 40 seeds the ratio
    stayed under 1.5 this way, under 3.3 in max norm). rnn_relu's gradients are left out: a
    pre-activation within rounding of 0 flips its derivative between 0 and 1 in either
    implementation, so both err by whole gradient entries at random (float64 and float32 parity
    check them exactly)."""
    ref, x, lengths, h0, c0 = problem(cell)
    packed = layout == "packed"
    args = (ref._flat_weights, x, lengths, h0, c0, 2, True)
    expected = run(cell, torch.float64, "cpu", packed, *args, reference=ref)
    ours = run(cell, dtype, target.device, packed, *args)
    nn_ref = make_nn(cell, I, H, num_layers=2, bidirectional=True)
    try:
        theirs = run(cell, dtype, target.device, packed, *args, reference=nn_ref)
    except RuntimeError:  # no cuDNN kernel for this dtype: torch's native CUDA loop
        with torch.backends.cudnn.flags(enabled=False):
            theirs = run(cell, dtype, target.device, packed, *args, reference=nn_ref)
    values = 3 if cell == "lstm" else 2
    compared = values if cell == "rnn_relu" else len(expected)
    for k, (a, b, e) in enumerate(zip(ours[:compared], theirs, expected)):
        assert a.dtype == dtype
        err = rel_err if k < values else rel_fro
        ours_err, torch_err = err(a.cpu(), e), err(b.cpu(), e)
        assert ours_err <= 2 * torch_err + 1e-7, f"tensor {k}: fusedrnn {ours_err:.2e} vs torch {torch_err:.2e}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("cell", CELLS)
def test_deterministic_over_runs_and_thread_orders(target, cell, dtype):
    ref, x, lengths, h0, c0 = problem(cell)
    args = (ref._flat_weights, x, lengths, h0, c0, 2, True)
    first = run(cell, dtype, target.device, True, *args)
    second = run(cell, dtype, target.device, True, *args)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    if target.name.startswith("emu"):  # the threads of every block in another order at every barrier
        emulation.set_schedule_seed(12345)
        shuffled = run(cell, dtype, target.device, True, *args)
        for a, b in zip(first, shuffled):
            assert torch.equal(a, b)


@pytest.mark.parametrize("cell", CELLS)
def test_cpu_and_cuda_agree(target, cell):
    ref, x, lengths, h0, c0 = problem(cell)
    args = (ref._flat_weights, x, lengths, h0, c0, 2, True)
    with native_kernels():
        on_cpu = run(cell, torch.float32, "cpu", True, *args)
    for a, b in zip(on_cpu, run(cell, torch.float32, target.device, True, *args)):
        assert_rel(b.cpu(), a, 1e-5)


@pytest.mark.parametrize("cls", [fusedrnn.RNN, fusedrnn.LSTM, fusedrnn.GRU])
def test_modules_and_non_contiguous_input(target, cls):
    m = cls(I, H, 2, batch_first=True, bidirectional=True).to(target.device)
    ref = {fusedrnn.RNN: torch.nn.RNN, fusedrnn.LSTM: torch.nn.LSTM, fusedrnn.GRU: torch.nn.GRU}[cls](
        I, H, 2, batch_first=True, bidirectional=True).to(target.device)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(T, I, B, device=target.device).transpose(1, 2).transpose(0, 1)  # (B, T, I), not contiguous
    assert not x.is_contiguous()
    with torch.backends.cudnn.flags(enabled=False):
        expected = ref(x)[0]
    assert_rel(m(x)[0], expected, 1e-5)


def test_emulated_launches_span_several_blocks(emu):
    before = emulation.stats()
    ref, x, lengths, h0, c0 = problem("lstm")
    run("lstm", torch.float32, "cpu", True, ref._flat_weights, x, lengths, h0, c0, 2, True)
    after = emulation.stats()
    launches, blocks = after["launches"] - before["launches"], after["blocks"] - before["blocks"]
    # 2 layers x 2 directions x (T forward + T backward) steps, each step's rows over 2 blocks
    # (the packed steps with fewer rows over 1 or 2).
    assert launches == 2 * 2 * 2 * T
    assert launches < blocks <= 2 * launches


def test_persistent_path_is_one_cooperative_launch_per_layer_and_direction(emu_persistent):
    before = emulation.stats()
    ref, x, lengths, h0, c0 = problem("gru")
    run("gru", torch.float32, "cpu", True, ref._flat_weights, x, lengths, h0, c0, 2, True)
    after = emulation.stats()
    coop = after["cooperative_launches"] - before["cooperative_launches"]
    assert coop == 2 * 2 * 2  # layers x directions x (forward, backward)
    assert after["launches"] - before["launches"] == coop  # no per-step launches left
    assert after["blocks"] - before["blocks"] == coop * 8  # 37 units in slices of 5: 8 blocks
    assert after["grid_barriers"] - before["grid_barriers"] == coop * T  # one a step


@pytest.mark.parametrize("sms,H", [(8, 37), (37, 37), (3, 37), (5, 1), (4, 64)],
                         ids=["slices-of-5-and-2", "one-unit-each", "13-13-11", "one-unit", "16-each"])
@pytest.mark.parametrize("cell", CELLS)
def test_persistent_slices_of_every_size(emu_persistent, cell, sms, H):
    emulation.set_sm_count(sms)
    ref = make_nn(cell, I, H, num_layers=1, bidirectional=True)
    x = torch.randn(T, B, I, dtype=torch.float64)
    lengths = random_lengths(B, T)
    h0, c0 = torch.randn(2, B, H, dtype=torch.float64), torch.randn(2, B, H, dtype=torch.float64)
    args = (ref._flat_weights, x, lengths, h0, c0, 1, True)
    expected = run(cell, torch.float64, "cpu", True, *args, reference=ref)
    before = emulation.stats()["cooperative_launches"]
    got = run(cell, torch.float32, "cpu", True, *args)
    assert emulation.stats()["cooperative_launches"] - before == 4
    for a, e in zip(got, expected):
        assert_rel(a, e, 1e-5, "float32 vs float64")


def test_float64_keeps_to_the_standard_path(emu_persistent):
    before = emulation.stats()["cooperative_launches"]
    ref, x, lengths, h0, c0 = problem("lstm", 1, False)
    run("lstm", torch.float64, "cpu", True, ref._flat_weights, x, lengths, h0, c0, 1, False)
    assert emulation.stats()["cooperative_launches"] == before


def test_forced_persistent_path_that_does_not_fit_is_a_clear_error(emu_persistent):
    emulation.set_sm_count(1)  # all 600 units in one block: 600 x 4 gates x 601 floats of W_hh
    m = fusedrnn.LSTM(3, 600)
    with pytest.raises(RuntimeError, match="FUSEDRNN_CUDA_PATH=persistent, but this layer does not fit the "
                                           "persistent kernel: a slice of 600 units needs"):
        m(torch.randn(2, 1, 3))


def test_cuda_path_rejects_bad_values(emu, monkeypatch):
    monkeypatch.setenv("FUSEDRNN_CUDA_PATH", "fast")
    with pytest.raises(RuntimeError, match="FUSEDRNN_CUDA_PATH must be standard or persistent, got 'fast'"):
        fusedrnn.GRU(3, 4)(torch.randn(2, 1, 3))


def test_default_path_is_persistent_where_it_fits(emu, monkeypatch):
    monkeypatch.delenv("FUSEDRNN_CUDA_PATH")
    before = emulation.stats()["cooperative_launches"]
    with torch.no_grad():
        fusedrnn.GRU(3, 4)(torch.randn(2, 1, 3))
    assert emulation.stats()["cooperative_launches"] == before + 1
    emulation.set_sm_count(1)
    before = emulation.stats()["cooperative_launches"]
    with torch.no_grad():
        fusedrnn.LSTM(3, 600)(torch.randn(2, 1, 3))  # does not fit: the standard path, silently
    assert emulation.stats()["cooperative_launches"] == before


def test_device_mismatch_is_a_clear_error():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
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
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
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


@pytest.mark.parametrize("cell,H,B,dtype", [("lstm", 32, 32, torch.float32), ("lstm", 64, 32, torch.float32),
                                            ("lstm", 64, 32, torch.bfloat16), ("gru", 96, 8, torch.float32)])
def test_automatic_choice_is_the_performance_models(emu, monkeypatch, cell, H, B, dtype):
    # fusedrnn.gpu_model mirrors the host code's plan (slices, shared memory, the product clocks the
    # automatic choice allows): on the emulated device of 1 SM, the path it predicts is the path run.
    from fusedrnn import gpu_model

    monkeypatch.delenv("FUSEDRNN_CUDA_PATH")
    emulation.set_sm_count(1)
    device = gpu_model.Device(sms=1, smem_optin=emulation.device_props()["smem_per_block_optin"])
    name = {torch.float32: "float32", torch.bfloat16: "bfloat16"}[dtype]
    predicted = gpu_model.plan(cell, H, B, name, device)["auto_path"]["forward"]
    m = {"lstm": fusedrnn.LSTM, "gru": fusedrnn.GRU}[cell](3, H).to(dtype)
    before = emulation.stats()["cooperative_launches"]
    with torch.no_grad():
        m(torch.randn(2, B, 3, dtype=dtype))
    ran = "persistent" if emulation.stats()["cooperative_launches"] > before else "standard"
    assert ran == predicted
