"""Accuracy of the CPU kernels' own float exp / sigmoid / tanh (csrc/cpu/vec_math.h), through the op.

A one-step layer with identity input weights makes the kernel return the function itself:
rnn_tanh's output is tanh(x); an LSTM whose g gate saturates (bias 30) and c0 = 0 returns
c = sigmoid(x). Both are bounded by 1 in magnitude. Every float32 result must be within 5e-7
relative of the float64 value where the result is a normal number (float32's own rounding is
6e-8), and NaN must stay NaN.
"""
import pytest
import torch

import fusedrnn  # noqa: F401  (registers the ops)

op = torch.ops.fusedrnn.layer_forward
H = 16


def inputs():
    x = torch.cat([
        torch.linspace(-20, 20, 4001, dtype=torch.float64),
        torch.linspace(-0.5, 0.5, 1001, dtype=torch.float64),
        # Dense where tanh's rational form rounds closest to 1 (its largest errors, and where the
        # rounded quotient can pass 1).
        torch.linspace(4.0, 10.0, 200001, dtype=torch.float64),
        -torch.linspace(4.0, 10.0, 200001, dtype=torch.float64),
        torch.logspace(-12, 2, 300, dtype=torch.float64),
        -torch.logspace(-12, 2, 300, dtype=torch.float64),
        torch.tensor([0.0, -0.0, 0.39999, 0.4, 0.40001, 87.0, -87.0, 88.0, -88.0, 1e30, -1e30], dtype=torch.float64),
    ])
    pad = (-x.numel()) % H
    return torch.cat([x, torch.zeros(pad, dtype=torch.float64)]).view(1, -1, H)  # (T=1, B, H)


def run_tanh(x):
    eye = torch.eye(H)
    out, *_ = op("rnn_tanh", x, None, torch.zeros(x.size(1), H), None, eye, torch.zeros(H, H), None, None, None,
                 False, False)
    return out


def run_sigmoid(x):
    w_ih = torch.zeros(4 * H, H)
    w_ih[:H] = torch.eye(H)
    b_ih = torch.zeros(4 * H)
    b_ih[2 * H:3 * H] = 30.0
    z = torch.zeros(x.size(1), H)
    _, _, cy, _ = op("lstm", x, None, z, z, w_ih, torch.zeros(4 * H, H), b_ih, None, None, False, False)
    return cy


@pytest.mark.parametrize("name,fn,ref", [("tanh", run_tanh, torch.tanh), ("sigmoid", run_sigmoid, torch.sigmoid)])
def test_float32_accuracy(name, fn, ref):
    x64 = inputs()
    x32 = x64.float()
    got = fn(x32).double()
    want = ref(x32.double())  # the exact function at the float32 input
    normal = want.abs() >= torch.finfo(torch.float32).tiny
    rel = ((got - want).abs() / want.abs().clamp_min(1e-300))[normal]
    assert rel.max().item() <= 5e-7, f"{name}: worst relative error {rel.max().item():.3g}"
    # Below float32's normal range the result is tiny too (absolute error under 1e-37).
    assert (got - want)[~normal].abs().max().item() <= 1e-37
    assert torch.isfinite(got).all()
    assert (got.abs() <= 1).all(), f"{name}: a result above 1 in magnitude"


@pytest.mark.parametrize("name,fn", [("tanh", run_tanh), ("sigmoid", run_sigmoid)])
def test_nan_propagates(name, fn):
    # The identity product spreads a NaN over its row (NaN * 0 = NaN): rows 0 and 2 are all NaN
    # going into the function, which must keep them NaN; row 1 stays finite.
    x = torch.zeros(1, 3, H)
    x[0, 0, 3] = float("nan")
    x[0, 2, H - 1] = float("nan")
    got = fn(x).reshape(3, H)
    assert torch.isnan(got[0]).all() and torch.isnan(got[2]).all(), name
    assert torch.isfinite(got[1]).all(), name
