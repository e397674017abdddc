"""Property-based conformance (hypothesis): random configurations of fusedrnn's modules against
torch.nn's on the same weights and inputs. Each example matches torch.nn (output, states and every
gradient) or raises torch.nn's exception type. FUSEDRNN_HYPOTHESIS_EXAMPLES sets the number of
examples (default 300), FUSEDRNN_HYPOTHESIS_RANDOM=1 draws new ones each run (the default draws the
same ones); a failing example is printed by hypothesis with the @reproduce_failure line that
replays it."""
import os

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from helpers import NN, assert_rel

hypothesis = pytest.importorskip("hypothesis")  # the README's test command installs it
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("FUSEDRNN_HYPOTHESIS_EXAMPLES", "300"))
FUSED = {"rnn_tanh": fusedrnn.RNN, "rnn_relu": fusedrnn.RNN, "lstm": fusedrnn.LSTM, "gru": fusedrnn.GRU}


@st.composite
def configs(draw):
    cell = draw(st.sampled_from(sorted(NN)))
    c = dict(cell=cell, num_layers=draw(st.integers(1, 3)), bidirectional=draw(st.booleans()),
             bias=draw(st.booleans()), input_size=draw(st.integers(1, 7)), hidden_size=draw(st.integers(1, 7)),
             batch=draw(st.integers(1, 5)), T=draw(st.integers(1, 6)), batch_first=draw(st.booleans()),
             dtype=draw(st.sampled_from(["float32", "float64"])), layout=draw(st.sampled_from(["dense", "packed"])),
             with_hx=draw(st.booleans()), input_kind=draw(st.sampled_from(["plain", "non_contiguous", "expanded"])),
             hx_kind=draw(st.sampled_from(["plain", "expanded"])), seed=draw(st.integers(0, 2**16)))
    c["proj_size"] = draw(st.integers(0, c["hidden_size"] - 1)) if cell == "lstm" else 0
    c["sorted"] = draw(st.booleans())
    # Now and then a mistake a user makes: torch.nn's exception type is expected then.
    c["mistake"] = draw(st.sampled_from([None] * 8 + ["input_size", "hx_batch", "hx_layers", "dtype"]))
    return c


def build(c):
    kwargs = dict(num_layers=c["num_layers"], bias=c["bias"], batch_first=c["batch_first"],
                  bidirectional=c["bidirectional"])
    if c["cell"].startswith("rnn"):
        kwargs["nonlinearity"] = c["cell"][4:]
    if c["proj_size"]:
        kwargs["proj_size"] = c["proj_size"]
    dtype = getattr(torch, c["dtype"])
    torch.manual_seed(c["seed"])
    ref = NN[c["cell"]][0](c["input_size"], c["hidden_size"], **kwargs).to(dtype)
    fused = FUSED[c["cell"]](c["input_size"], c["hidden_size"], **kwargs).to(dtype)
    fused.load_state_dict(ref.state_dict())
    return ref, fused, dtype


def inputs(c, dtype):
    g = torch.Generator().manual_seed(c["seed"] + 1)
    T, B, I = c["T"], c["batch"], c["input_size"] + (1 if c["mistake"] == "input_size" else 0)
    shape = (B, T, I) if c["batch_first"] else (T, B, I)
    if c["input_kind"] == "non_contiguous":
        x = torch.randn(shape[::-1], generator=g, dtype=dtype).permute(2, 1, 0)
    elif c["input_kind"] == "expanded":
        x = torch.randn(shape[0], 1, shape[2], generator=g, dtype=dtype).expand(shape)
    else:
        x = torch.randn(shape, generator=g, dtype=dtype)
    if c["mistake"] == "dtype":
        x = x.to(torch.float32 if dtype == torch.float64 else torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    if c["sorted"]:
        lengths = lengths.sort(descending=True).values
    D = 2 if c["bidirectional"] else 1
    L = c["num_layers"] * D + (1 if c["mistake"] == "hx_layers" else 0)
    Bh = B + (1 if c["mistake"] == "hx_batch" else 0)
    out_size = c["proj_size"] or c["hidden_size"]
    if c["hx_kind"] == "expanded":
        h0 = torch.randn(L, 1, out_size, generator=g, dtype=dtype).expand(L, Bh, out_size)
        c0 = torch.randn(L, 1, c["hidden_size"], generator=g, dtype=dtype).expand(L, Bh, c["hidden_size"])
    else:
        h0 = torch.randn(L, Bh, out_size, generator=g, dtype=dtype)
        c0 = torch.randn(L, Bh, c["hidden_size"], generator=g, dtype=dtype)
    return x, lengths, h0, c0


def run(module, c, x, lengths, h0, c0):
    """(outputs, gradients) of one forward and backward, or the exception raised."""
    xi = x.detach().clone().requires_grad_()
    hi, ci = h0.detach().clone().requires_grad_(), c0.detach().clone().requires_grad_()
    hx = ((hi, ci) if c["cell"] == "lstm" else hi) if c["with_hx"] else None
    inp = (pack_padded_sequence(xi, lengths, batch_first=c["batch_first"], enforce_sorted=c["sorted"])
           if c["layout"] == "packed" else xi)
    try:
        out, state = module(inp, hx)
    except Exception as e:  # noqa: BLE001  (compared with torch.nn's below)
        return e
    out = out.data if c["layout"] == "packed" else out
    states = list(state) if c["cell"] == "lstm" else [state]
    vals = [out, *states]
    weight = torch.linspace(-1, 1, sum(v.numel() for v in vals), dtype=out.dtype)
    loss = (torch.cat([v.reshape(-1) for v in vals]) * weight).sum()
    leaves = [xi] + ([hi] + ([ci] if c["cell"] == "lstm" else []) if c["with_hx"] else []) + list(module.parameters())
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [v.detach() for v in vals], [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, leaves)]


# The default run draws the same examples every time (derandomize), so that CI cannot turn red on a
# new draw hitting one of torch.nn's own crashes; FUSEDRNN_HYPOTHESIS_RANDOM=1 explores new ones.
RANDOM = os.environ.get("FUSEDRNN_HYPOTHESIS_RANDOM", "0") == "1"


@settings(max_examples=EXAMPLES, deadline=None, print_blob=True, derandomize=not RANDOM, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(configs())
def test_matches_torch_nn(c):
    ref, fused, dtype = build(c)
    x, lengths, h0, c0 = inputs(c, dtype)
    if c["cell"] == "lstm" and c["layout"] == "packed" and c["mistake"] == "input_size":
        # torch.nn's gap, not followed and not run: its LSTM checks no input size on packed input
        # and reads past the rows (a segfault or "corrupted size vs. prev_size" in torch 2.13 and
        # 2.14.1, the first CI crash of this test). fusedrnn raises GRU's and RNN's error.
        got = run(fused, c, x, lengths, h0, c0)
        assert isinstance(got, RuntimeError) and "input.size(-1) must be equal to input_size" in str(got), repr(got)
        return
    expected = run(ref, c, x, lengths, h0, c0)
    got = run(fused, c, x, lengths, h0, c0)
    if c["mistake"] in ("hx_batch", "hx_layers") and c["layout"] == "packed" and c["with_hx"] \
            and not isinstance(expected, Exception):
        # torch.nn's gap, not followed: on packed input it reorders hx by sorted_indices before
        # checking its size (and LSTM checks none on sorted packed input), so a wrong hx batch or
        # layer count can run silently on the wrong rows. fusedrnn raises torch.nn's dense error.
        assert isinstance(got, RuntimeError) and "Expected hidden" in str(got), repr(got)
        return
    if isinstance(expected, Exception):
        assert isinstance(got, type(expected)), f"torch.nn raised {expected!r}, fusedrnn gave {got!r}"
        return
    assert not isinstance(got, Exception), f"torch.nn ran, fusedrnn raised {got!r}"
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    (ev, eg), (gv, gg) = expected, got
    for a, e, name in zip(gv, ev, ["output", "h_n", "c_n"]):
        assert_rel(a, e, tol, name)
    for i, (a, e) in enumerate(zip(gg, eg)):
        assert_rel(a, e, 10 * tol, f"gradient {i}")
