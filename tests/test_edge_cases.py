"""Edge shapes and layouts: batch 1, sequence 1, batch 0, T = 1000, batch_first, strides."""
import pytest
import torch

import fusedrnn.functional as FR
from helpers import CELLS, assert_rel, make_nn


def compare(cell, x, tol=1e-10, batch_first=False, **kwargs):
    ref = make_nn(cell, x.size(-1), 6, batch_first=batch_first, **kwargs)
    x = x.detach().requires_grad_()
    weights = [w.detach().to(x.dtype).requires_grad_() for w in ref._flat_weights]
    out, state = FR.rnn(cell, x, None, weights, batch_first=batch_first, **kwargs)
    x_ref = x.detach().double().requires_grad_()
    ref_out, ref_state = ref(x_ref)
    assert out.shape == ref_out.shape
    assert_rel(out, ref_out, tol, "output")
    states = state if cell == "lstm" else (state,)
    ref_states = ref_state if cell == "lstm" else (ref_state,)
    for s, r in zip(states, ref_states):
        assert_rel(s, r, tol, "state")
    if out.numel():
        (out.sin().sum() + sum(s.sum() for s in states)).backward()
        (ref_out.sin().sum() + sum(s.sum() for s in ref_states)).backward()
        assert_rel(x.grad, x_ref.grad, tol, "input grad")
        for w, p in zip(weights, ref.parameters()):
            assert_rel(w.grad, p.grad, tol, "weight grad")
    return out, state


@pytest.mark.parametrize("cell", CELLS)
def test_batch_of_one(cell):
    compare(cell, torch.randn(7, 1, 3, dtype=torch.float64), num_layers=2, bidirectional=True)


@pytest.mark.parametrize("cell", CELLS)
def test_sequence_of_one(cell):
    compare(cell, torch.randn(1, 5, 3, dtype=torch.float64), num_layers=2, bidirectional=True)


@pytest.mark.parametrize("cell", CELLS)
def test_batch_of_zero(cell):
    ref = make_nn(cell, 3, 6, num_layers=2, bidirectional=True)
    x = torch.randn(4, 0, 3, dtype=torch.float64, requires_grad=True)
    weights = [w.detach().clone().requires_grad_() for w in ref._flat_weights]
    out, state = FR.rnn(cell, x, None, weights, num_layers=2, bidirectional=True)
    ref_out, ref_state = ref(x)
    assert out.shape == ref_out.shape == (4, 0, 12)
    h_n = state[0] if cell == "lstm" else state
    assert h_n.shape == (4, 0, 6)
    out.sum().backward()  # torch.nn allows backward through an empty batch too
    assert x.grad.shape == x.shape
    assert all(w.grad is not None and (w.grad == 0).all() for w in weights)


@pytest.mark.parametrize("cell", CELLS)
def test_long_sequence(cell):
    compare(cell, torch.randn(1000, 3, 4, dtype=torch.float64))


@pytest.mark.parametrize("cell", CELLS)
def test_long_sequence_float32(cell):
    compare(cell, torch.randn(1000, 3, 4, dtype=torch.float64).float(), tol=1e-4)


@pytest.mark.parametrize("cell", CELLS)
def test_batch_first_and_non_contiguous_input(cell):
    x = torch.randn(3, 8, 5, dtype=torch.float64).transpose(1, 2)  # (B, T, I), strided
    assert not x.is_contiguous()
    out, _ = compare(cell, x, batch_first=True, bidirectional=True)
    assert out.shape == (3, 5, 12)


@pytest.mark.parametrize("cell", CELLS)
def test_deterministic(cell):
    ref = make_nn(cell, 8, 16, num_layers=2, bidirectional=True, dtype=torch.float32)
    x = torch.randn(20, 9, 8)

    def run():
        xi = x.clone().requires_grad_()
        weights = [w.detach().clone().requires_grad_() for w in ref._flat_weights]
        out, _ = FR.rnn(cell, xi, None, weights, num_layers=2, bidirectional=True)
        out.pow(2).sum().backward()
        return [out.detach(), xi.grad] + [w.grad for w in weights]

    for a, b in zip(run(), run()):
        assert torch.equal(a, b)


def test_dropout_between_layers_only_in_training():
    ref = make_nn("lstm", 4, 6, num_layers=3)
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    eval_out, _ = FR.lstm(x, None, ref._flat_weights, num_layers=3, dropout=0.5, training=False)
    with torch.no_grad():
        assert_rel(eval_out, ref(x)[0], 1e-10)
    train_out, _ = FR.lstm(x, None, ref._flat_weights, num_layers=3, dropout=0.5, training=True)
    assert (train_out - eval_out).abs().max() > 1e-3
    # dropout=1 zeroes the input of layers 2 and 3, so the output no longer depends on x.
    out1, _ = FR.lstm(x, None, ref._flat_weights, num_layers=3, dropout=1.0, training=True)
    out2, _ = FR.lstm(torch.randn_like(x), None, ref._flat_weights, num_layers=3, dropout=1.0, training=True)
    assert torch.equal(out1, out2)


def test_functional_argument_errors():
    ref = make_nn("gru", 4, 6, num_layers=2)
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="expected 8 weights"):
        FR.gru(x, None, ref._flat_weights[:6], num_layers=2)
    with pytest.raises(ValueError, match=r"expected h0 of shape \(2, 2, 6\)"):
        FR.gru(x, torch.zeros(1, 2, 6, dtype=torch.float64), ref._flat_weights, num_layers=2)
    with pytest.raises(ValueError, match="unknown cell"):
        FR.rnn("lstmx", x, None, ref._flat_weights, num_layers=2)
    with pytest.raises(ValueError, match="dropout"):
        FR.gru(x, None, ref._flat_weights, num_layers=2, dropout=1.5)
