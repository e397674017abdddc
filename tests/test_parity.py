"""The functional API against torch.nn on the same weights: outputs, final states, gradients.

Every combination of cell x layers {1,2,3} x directions x bias x dense/packed x h0 given/None,
in float64 (agreement to 1e-10) and float32 (to 1e-5 against the float64 reference).
"""
import itertools

import pytest
import torch

import fusedrnn.functional as FR
from helpers import CELLS, assert_rel, make_nn, run_pair

T, B, I, H = 5, 4, 3, 6


COMBOS = list(itertools.product(CELLS, (1, 2, 3), (False, True), (True, False), ("dense", "packed"), (True, False)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell,num_layers,bidirectional,bias,layout,with_h0", COMBOS,
                         ids=[f"{c}-L{n}-{'bi' if b else 'uni'}-{'bias' if bb else 'nobias'}-{lay}-{'h0' if h else 'noh0'}"
                              for c, n, b, bb, lay, h in COMBOS])
def test_parity_with_torch_nn(cell, num_layers, bidirectional, bias, layout, with_h0, dtype):
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    ref_vals, ref_grads, vals, grads = run_pair(cell, num_layers, bidirectional, bias, layout == "packed", with_h0, dtype)
    names = ["output", "h_n", "c_n"]
    for name, a, e in zip(names, vals, ref_vals):
        assert a.dtype == dtype
        assert_rel(a, e, tol, name)
    assert len(grads) == len(ref_grads)
    for k, (a, e) in enumerate(zip(grads, ref_grads)):
        assert a is not None, f"gradient {k} missing"
        assert_rel(a, e, tol, f"gradient {k}")


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layout", ["dense", "packed"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_lstm_projections(bidirectional, layout, dtype):
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    ref_vals, ref_grads, vals, grads = run_pair("lstm", 2, bidirectional, True, layout == "packed", True, dtype, proj_size=4)
    for a, e in zip(vals + grads, ref_vals + ref_grads):
        assert_rel(a, e, tol)


def test_float32_reference_is_tight_enough_to_catch_errors():
    """The float32 tolerance must be able to fail: weights off by 0.1% are caught."""
    ref = make_nn("gru", I, H, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    expected, _ = ref(x)
    weights = [w.detach().float().clone() for w in ref._flat_weights]
    weights[1].mul_(1.001)
    out, _ = FR.gru(x.float(), None, weights)
    with pytest.raises(AssertionError):
        assert_rel(out, expected, 1e-5)
