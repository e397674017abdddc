"""Packed variable-length batches: equal to torch.nn on the same PackedSequence, and equal to
running every sequence on its own."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fusedrnn.functional as FR
from helpers import CELLS, assert_rel, make_nn

I, H = 4, 5


def lengths_cases():
    return {
        "random": lambda: torch.randint(1, 12, (7,)),
        "with_length_1": lambda: torch.tensor([3, 1, 9, 1, 4]),
        "all_equal": lambda: torch.full((6,), 8),
        "single_sequence": lambda: torch.tensor([10]),
        "all_length_1": lambda: torch.ones(4, dtype=torch.long),
    }


@pytest.mark.parametrize("case", list(lengths_cases()))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_packed_matches_torch_and_per_sequence(cell, bidirectional, case):
    lengths = lengths_cases()[case]()
    batch, T = len(lengths), int(lengths.max())
    ref = make_nn(cell, I, H, num_layers=2, bidirectional=bidirectional)
    D = 2 if bidirectional else 1
    x = torch.randn(T, batch, I, dtype=torch.float64)
    h0 = torch.randn(2 * D, batch, H, dtype=torch.float64)
    c0 = torch.randn(2 * D, batch, H, dtype=torch.float64)
    hx = (h0, c0) if cell == "lstm" else h0
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)

    out, state = FR.rnn(cell, packed, hx, ref._flat_weights, num_layers=2, bidirectional=bidirectional)
    with torch.no_grad():
        ref_out, ref_state = ref(packed, hx)
    assert torch.equal(out.batch_sizes, packed.batch_sizes)
    assert torch.equal(out.sorted_indices, packed.sorted_indices)
    assert torch.equal(out.unsorted_indices, packed.unsorted_indices)
    assert_rel(out.data, ref_out.data, 1e-10, "packed output")
    states = state if cell == "lstm" else (state,)
    ref_states = ref_state if cell == "lstm" else (ref_state,)
    for s, r in zip(states, ref_states):
        assert_rel(s, r, 1e-10, "final state")

    padded, out_lengths = pad_packed_sequence(out)
    assert torch.equal(out_lengths, lengths)
    for i, n in enumerate(lengths.tolist()):
        hx_i = (h0[:, i:i + 1], c0[:, i:i + 1]) if cell == "lstm" else h0[:, i:i + 1]
        out_i, state_i = FR.rnn(cell, x[:n, i:i + 1], hx_i, ref._flat_weights, num_layers=2,
                                bidirectional=bidirectional)
        assert_rel(padded[:n, i:i + 1], out_i, 1e-12, f"sequence {i} output")
        assert (padded[n:, i] == 0).all()
        for s, s_i in zip(states, state_i if cell == "lstm" else (state_i,)):
            assert_rel(s[:, i:i + 1], s_i, 1e-12, f"sequence {i} final state")


@pytest.mark.parametrize("cell", CELLS)
def test_packed_gradients_match_per_sequence(cell):
    """Gradients through a packed batch equal the sum of per-sequence gradients."""
    lengths = torch.tensor([2, 6, 1, 4])
    ref = make_nn(cell, I, H, bidirectional=True)
    weights = [w.detach().clone().requires_grad_() for w in ref._flat_weights]
    x = torch.randn(6, 4, I, dtype=torch.float64, requires_grad=True)
    out, _ = FR.rnn(cell, pack_padded_sequence(x, lengths, enforce_sorted=False), None, weights, bidirectional=True)
    (out.data ** 2).sum().backward()
    expected_w = [torch.zeros_like(w) for w in weights]
    for i, n in enumerate(lengths.tolist()):
        w_i = [w.detach().clone().requires_grad_() for w in weights]
        x_i = x.detach()[:n, i:i + 1].clone().requires_grad_()
        o_i, _ = FR.rnn(cell, x_i, None, w_i, bidirectional=True)
        (o_i ** 2).sum().backward()
        assert_rel(x.grad[:n, i:i + 1], x_i.grad, 1e-12, f"input grad of sequence {i}")
        assert (x.grad[n:, i] == 0).all()
        for acc, w in zip(expected_w, w_i):
            acc += w.grad
    for w, e in zip(weights, expected_w):
        assert_rel(w.grad, e, 1e-12, "weight grad")
