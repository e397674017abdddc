"""Shared helpers for the test suite: torch.nn references and error measures."""
import os

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn.functional as FR

# cell name -> (torch.nn class, constructor kwargs)
NN = {
    "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}
CELLS = tuple(NN)


def make_nn(cell, input_size, hidden_size, dtype=torch.float64, **kwargs):
    cls, extra = NN[cell]
    return cls(input_size, hidden_size, dtype=dtype, **extra, **kwargs)


def rel_err(actual, expected):
    """Max-norm error relative to the reference's largest magnitude (at least 1)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if expected.numel() == 0:
        return 0.0
    expected = expected.to(torch.float64)
    err = (actual.to(torch.float64) - expected).abs().max().item()
    return err / max(1.0, expected.abs().max().item())


def assert_rel(actual, expected, tol, what=""):
    e = rel_err(actual, expected)
    assert e <= tol, f"{what}: relative error {e:.3e} > {tol:.1e}"


def assert_pair(ref_vals, ref_grads, vals, grads, value_tol, grad_tol):
    """run_pair's results: every value and every gradient within its relative tolerance."""
    for a, e in zip(vals, ref_vals):
        assert_rel(a, e, value_tol, "values")
    for i, (a, e) in enumerate(zip(grads, ref_grads)):
        assert_rel(a, e, grad_tol, f"grad {i}")


def random_lengths(batch, max_len, gen=None):
    """Lengths in [1, max_len], always including 1 and max_len when batch >= 2."""
    lengths = torch.randint(1, max_len + 1, (batch,), generator=gen)
    if batch >= 2:
        lengths[0] = 1
        lengths[-1] = max_len
    return lengths[torch.randperm(batch, generator=gen)]


def run_pair(cell, num_layers, bidirectional, bias, packed, with_h0, dtype, proj_size=0, T=5, B=4, I=3, H=6):
    """Run torch.nn (float64) and fusedrnn (dtype) on the same inputs (seq_len T, batch B, input I,
    hidden H); return (reference values, reference gradients, values, gradients)."""
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    if proj_size:
        kwargs["proj_size"] = proj_size
    ref = make_nn(cell, I, H, dtype=torch.float64, **kwargs)
    D = 2 if bidirectional else 1
    out_size = proj_size or H
    x = torch.randn(T, B, I, dtype=torch.float64)
    lengths = random_lengths(B, T)
    h0 = torch.randn(num_layers * D, B, out_size, dtype=torch.float64) if with_h0 else None
    c0 = torch.randn(num_layers * D, B, H, dtype=torch.float64) if with_h0 else None

    def run(module_weights, dt, use_ref):
        xi = x.to(dt).requires_grad_()
        hi = h0.to(dt).requires_grad_() if with_h0 else None
        ci = c0.to(dt).requires_grad_() if with_h0 else None
        weights = [w.detach().to(dt).requires_grad_() for w in module_weights]
        inp = pack_padded_sequence(xi, lengths, enforce_sorted=False) if packed else xi
        hx = (hi, ci) if (cell == "lstm" and with_h0) else hi
        if use_ref:
            with torch.no_grad():
                for p, w in zip(ref.parameters(), weights):
                    p.copy_(w)
            out, state = ref(inp, hx)
            leaves = [xi] + ([hi] if with_h0 else []) + ([ci] if with_h0 and cell == "lstm" else []) + list(ref.parameters())
        else:
            out, state = FR.rnn(cell, inp, hx, weights, num_layers=num_layers, bias=bias, bidirectional=bidirectional)
            leaves = [xi] + ([hi] if with_h0 else []) + ([ci] if with_h0 and cell == "lstm" else []) + weights
        out_data = out.data if packed else out
        states = list(state) if cell == "lstm" else [state]
        # A loss that weights every output and final state differently.
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=dt).view_as(o)).sum() for o in [out_data, *states])
        loss = loss + (out_data ** 2).sum()
        grads = torch.autograd.grad(loss, leaves)
        return [out_data.detach(), *[s.detach() for s in states]], list(grads)

    ref_vals, ref_grads = run(ref._flat_weights, torch.float64, True)
    vals, grads = run(ref._flat_weights, dtype, False)
    return ref_vals, ref_grads, vals, grads


def require_emulation():
    """Skip (or, where the test command built it, FUSEDRNN_EXPECT_EMU=1, fail) without fusedrnn._emu."""
    import fusedrnn.emulation as emulation

    if not emulation.available():
        if os.environ.get("FUSEDRNN_EXPECT_EMU") == "1":
            pytest.fail("fusedrnn._emu, the emulated CUDA backend, was not built (FUSEDRNN_EMU=1)")
        pytest.skip("fusedrnn was built without the emulated CUDA backend (FUSEDRNN_EMU=1 builds it)")
