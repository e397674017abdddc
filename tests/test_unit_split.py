"""The CPU's unit split: a batch of one row, in inference, on several threads.

One row cannot be cut into row blocks, so each thread takes a slice of the hidden units through
every step, meeting the others at a barrier after each step (layer_kernel.cpp, unit_split).
By default only layers whose W_hh outgrows a core's L2 are split; FUSEDRNN_UNIT_SPLIT=1 splits any
qualifying call (float32, inference, batch 1, no projections), so small shapes run it here, on 2
and 3 threads, dense and packed, both directions, 2 layers. Results must match torch.nn, computed
in float64 (float32 kernels: 2e-5 relative).
"""
import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import fusedrnn.functional as FR
from helpers import CELLS, assert_rel, make_nn


def compare(cell, packed, bidirectional, H=11, T=9, I=5, num_layers=2, seed=0):
    torch.manual_seed(seed)
    m = make_nn(cell, I, H, num_layers=num_layers, bidirectional=bidirectional, dtype=torch.float64)
    x = torch.randn(T, 1, I, dtype=torch.float64)
    D = 2 if bidirectional else 1
    h0 = torch.randn(num_layers * D, 1, H, dtype=torch.float64)
    hx = (h0, torch.randn_like(h0)) if cell == "lstm" else h0
    inp = pack_sequence([x[:, 0]]) if packed else x
    with torch.no_grad():
        ref_out, ref_state = m(inp, hx)
        f32 = (lambda t: t.float())
        hx32 = tuple(map(f32, hx)) if cell == "lstm" else f32(hx)
        inp32 = pack_sequence([x[:, 0].float()]) if packed else x.float()
        out, state = FR.rnn(cell, inp32, hx32, [w.float() for w in m._flat_weights], num_layers=num_layers,
                            bidirectional=bidirectional)
    if packed:
        ref_out, out = ref_out.data, out.data
    assert_rel(out.double(), ref_out, 2e-5, "output")
    ref_states = ref_state if cell == "lstm" else (ref_state,)
    states = state if cell == "lstm" else (state,)
    for a, b in zip(states, ref_states):
        assert_rel(a.double(), b, 2e-5, "state")


@pytest.mark.parametrize("cell,packed,bidirectional,nthreads",
                         list(itertools.product(CELLS, (False, True), (False, True), (2, 3))))
def test_forced_split_matches_torch(monkeypatch, threads, cell, packed, bidirectional, nthreads):
    monkeypatch.setenv("FUSEDRNN_UNIT_SPLIT", "1")
    threads(nthreads)
    compare(cell, packed, bidirectional)


@pytest.mark.parametrize("H", [2, 3, 17, 40])
@pytest.mark.parametrize("cell", CELLS)
def test_forced_split_hidden_sizes(monkeypatch, threads, cell, H):
    """Slices of one unit up to widths with paired, single and partial vectors in them."""
    monkeypatch.setenv("FUSEDRNN_UNIT_SPLIT", "1")
    threads(3)
    compare(cell, False, False, H=H, num_layers=1)


@pytest.mark.parametrize("cell", CELLS)
def test_default_split_on_a_big_layer(threads, cell):
    """W_hh of 1 MB or more (lstm 256 units, the others 512): the default rule splits it."""
    threads(2)
    compare(cell, False, False, H=256 if cell == "lstm" else 512, T=12, I=32, num_layers=1)


@pytest.mark.parametrize("value", ["0", "1"])
def test_one_thread_and_switched_off(monkeypatch, threads, value):
    """On one thread, or with the split switched off, the row loop runs the layer: same results."""
    monkeypatch.setenv("FUSEDRNN_UNIT_SPLIT", value)
    threads(1 if value == "1" else 2)
    compare("gru", False, True)
