"""The CPU's unit split: the hidden units of a layer split between threads, every thread computing
every row of a step for its units, meeting the others at a barrier after each step, forward
(inference and training) and backward (layer_kernel.cpp, unit_split).

By default only layers whose W_hh outgrows a core's L2 and whose row blocks would be short are
split; FUSEDRNN_UNIT_SPLIT=1 splits any qualifying call (float32, no projections), so small shapes
run it here, on 2 and 3 threads, batch 1 and several rows of different lengths, dense and packed,
both directions, 2 layers. Results must match torch.nn computed in float64 (float32 kernels: 2e-5
relative), gradients included; fusedrnn._C.loop_stats() tells that the split ran.
"""
import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn._C as C
import fusedrnn.functional as FR
from helpers import CELLS, assert_rel, make_nn


def split_calls():
    st = C.loop_stats()
    return st["unit_split_forward"], st["unit_split_backward"]


def step_proj_calls():
    return C.loop_stats()["unit_split_step_proj"]


def compare(cell, packed, bidirectional, H=11, T=9, I=5, B=1, num_layers=2, train=False, seed=0):
    """fusedrnn in float32 against torch.nn in float64; returns the unit split's (forward, backward)
    loop count during the fusedrnn run."""
    torch.manual_seed(seed)
    m = make_nn(cell, I, H, num_layers=num_layers, bidirectional=bidirectional, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    D = 2 if bidirectional else 1
    h0 = torch.randn(num_layers * D, B, H, dtype=torch.float64)
    c0 = torch.randn_like(h0)
    lengths = torch.tensor([T - (k * 3) % T for k in range(B)])  # T, T-3, ...: rows leave at different steps

    def run(dtype, ours):
        xi = x.to(dtype).requires_grad_(train)
        hi, ci = h0.to(dtype).requires_grad_(train), c0.to(dtype).requires_grad_(train)
        hx = (hi, ci) if cell == "lstm" else hi
        inp = pack_padded_sequence(xi, lengths, enforce_sorted=False) if packed else xi
        weights = [w.detach().to(dtype).requires_grad_(train) for w in m._flat_weights]
        with torch.set_grad_enabled(train):
            if ours:
                out, state = FR.rnn(cell, inp, hx, weights, num_layers=num_layers, bidirectional=bidirectional)
                params = weights
            else:
                out, state = m(inp, hx)
                params = list(m.parameters())
            out = out.data if packed else out
            values = [out, *(state if cell == "lstm" else (state,))]
            if not train:
                return values, []
            loss = sum((v * torch.linspace(-1, 1, v.numel(), dtype=dtype).view_as(v)).sum() for v in values)
            leaves = [xi, hi] + ([ci] if cell == "lstm" else []) + params
            return values, list(torch.autograd.grad(loss, leaves))

    ref_values, ref_grads = run(torch.float64, False)
    before = split_calls()
    values, grads = run(torch.float32, True)
    after = split_calls()
    for a, e in zip(values, ref_values):
        assert_rel(a.double(), e.detach(), 2e-5, "value")
    for k, (a, e) in enumerate(zip(grads, ref_grads)):
        assert_rel(a.double(), e, 2e-5, f"gradient {k}")
    return after[0] - before[0], after[1] - before[1]


@pytest.mark.parametrize("cell,packed,bidirectional,nthreads,B",
                         list(itertools.product(CELLS, (False, True), (False, True), (2, 3), (1, 5))))
def test_forced_split_matches_torch(monkeypatch, threads, cell, packed, bidirectional, nthreads, B):
    monkeypatch.setenv("FUSEDRNN_UNIT_SPLIT", "1")
    threads(nthreads)
    forward, backward = compare(cell, packed, bidirectional, B=B, train=True)
    layers_dirs = 2 * (2 if bidirectional else 1)
    assert (forward, backward) == (layers_dirs, layers_dirs)


@pytest.mark.parametrize("cell,packed", list(itertools.product(CELLS, (False, True))))
def test_forced_split_inference(monkeypatch, threads, cell, packed):
    monkeypatch.setenv("FUSEDRNN_UNIT_SPLIT", "1")
    threads(2)
    assert compare(cell, packed, True, B=4) == (4, 0)


@pytest.mark.parametrize("H", [2, 3, 17, 40])
@pytest.mark.parametrize("cell", CELLS)
def test_forced_split_hidden_sizes(monkeypatch, threads, cell, H):
    """Slices of one unit up to widths with paired, single and partial vectors in them."""
    monkeypatch.setenv("FUSEDRNN_UNIT_SPLIT", "1")
    threads(3)
    assert compare(cell, True, False, H=H, B=3, num_layers=1, train=True) == (1, 1)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("H", [7, 37, 70])
@pytest.mark.parametrize("cell", CELLS)
def test_forced_split_batch_one_reads_w_hh_in_place(monkeypatch, threads, cell, H, isa):
    """A batch of one row: each thread's units of W_hh read in place (gemv_rows, no packing), with
    slices of fewer and more than 8 rows and k = H with and without a partial vector."""
    if isa == "avx512" and C.packed_isa() != "avx512":
        pytest.skip("this CPU has no AVX-512")
    monkeypatch.setenv("FUSEDRNN_PACKED_ISA", isa)
    monkeypatch.setenv("FUSEDRNN_UNIT_SPLIT", "1")
    threads(2)
    assert compare(cell, False, False, H=H, T=7, B=1, num_layers=2, train=True) == (2, 2)


@pytest.mark.parametrize("B", [1, 16])
@pytest.mark.parametrize("cell", CELLS)
def test_default_split_on_a_big_layer(threads, cell, B):
    """W_hh of 512 KB or more with short row blocks: the default rule splits it, both passes."""
    threads(2)
    H = 256 if cell == "lstm" else 448
    assert compare(cell, False, False, H=H, T=10, I=32, B=B, num_layers=1, train=True) == (1, 1)


@pytest.mark.parametrize("cell", CELLS)
def test_default_rule_keeps_small_layers_and_tall_blocks_in_the_row_loop(threads, cell):
    threads(2)
    assert compare(cell, False, False, H=64, T=10, B=4, num_layers=1, train=True) == (0, 0)  # W_hh small
    assert compare(cell, False, False, H=256 if cell == "lstm" else 448, T=10, I=8, B=80, num_layers=1,
                   train=True) == (0, 0)  # 40 rows a block


@pytest.mark.parametrize("value", ["0", "1"])
def test_one_thread_and_switched_off(monkeypatch, threads, value):
    """On one thread, or with the split switched off, the row loop runs the layer: same results."""
    monkeypatch.setenv("FUSEDRNN_UNIT_SPLIT", value)
    threads(1 if value == "1" else 2)
    assert compare("gru", True, True, B=3, train=True) == (0, 0)


@pytest.mark.parametrize("packed,bidirectional", [(False, False), (True, True)])
@pytest.mark.parametrize("cell", CELLS)
def test_split_with_per_step_input_projection(monkeypatch, threads, cell, packed, bidirectional):
    """The split's threads projecting each step's input rows for their own units (the packed kernel
    forced: FUSEDRNN_PACKED_GEMM=1), against the whole-sequence projection (FUSEDRNN_STEP_PROJ=0):
    both match torch.nn, and the counter tells which ran."""
    monkeypatch.setenv("FUSEDRNN_UNIT_SPLIT", "1")
    monkeypatch.setenv("FUSEDRNN_PACKED_GEMM", "1")
    threads(2)
    layers_dirs = 2 * (2 if bidirectional else 1)
    for value, expected in (("", layers_dirs), ("0", 0)):
        monkeypatch.setenv("FUSEDRNN_STEP_PROJ", value)
        before = step_proj_calls()
        assert compare(cell, packed, bidirectional, H=21, I=7, B=5, train=True) == (layers_dirs, layers_dirs)
        assert step_proj_calls() - before == expected


@pytest.mark.parametrize("B,T,expected", [(32, 10, 1), (16, 20, 0), (1, 320, 0)])
def test_default_per_step_projection_from_32_rows(threads, B, T, expected):
    """By default the split projects per step from 32 rows a step on (lstm_h512's shape class),
    with 320 rows in all in every case (enough for the packed kernel)."""
    threads(2)
    before = step_proj_calls()
    assert compare("lstm", False, False, H=256, T=T, I=16, B=B, num_layers=1) == (1, 0)
    assert step_proj_calls() - before == expected


@pytest.mark.parametrize("B", [1, 2, 5])
@pytest.mark.parametrize("cell", CELLS)
def test_default_split_of_a_short_forward(threads, cell, B):
    """Under 8 steps the default rule splits the forward (the row loop's products would go to the
    BLAS, which copies W_hh every step; at batch 1 nothing is packed at all) but not the backward,
    whose slices' packing the steps would not pay for."""
    threads(2)
    H = 256 if cell == "lstm" else 448
    for T in (1, 3, 7):
        assert compare(cell, False, False, H=H, T=T, I=32, B=B, num_layers=1, train=True) == (1, 0)
    assert compare(cell, False, False, H=H, T=8, I=32, B=B, num_layers=1, train=True) == (1, 1)


def column_split_calls():
    return C.loop_stats()["column_split_products"]


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("nthreads", [1, 2, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_column_split_input_projection(monkeypatch, threads, cell, nthreads, isa):
    """The whole-sequence input projection of fewer rows than pay for packing all of W_ih (at most
    255), against a W_ih of 64K weights or more: split between threads by W_ih's rows, rows of 1-4
    through gemv_rows, more through each thread's own packed panels. W_ih's rows (gate units) not a
    multiple of 16 and I not a multiple of 8 or 16 (partial panels and vectors)."""
    if isa == "avx512" and C.packed_isa() != "avx512":
        pytest.skip("this CPU has no AVX-512")
    monkeypatch.setenv("FUSEDRNN_PACKED_ISA", isa)
    threads(nthreads)
    I = 67
    H = {"lstm": 250, "gru": 330}.get(cell, 990)  # G * H * I >= 65536, G * H not a multiple of 16
    for T, B in ((1, 1), (4, 1), (2, 2), (5, 1), (9, 3), (60, 4)):
        before = column_split_calls()
        compare(cell, False, False, H=H, T=T, I=I, B=B, num_layers=1, train=True)
        assert column_split_calls() - before == 1, (T, B)


def test_column_split_off_below_its_weight_size_and_from_256_rows(threads):
    threads(2)
    before = column_split_calls()
    compare("gru", False, False, H=40, T=5, I=67, B=2, num_layers=1)  # 120 x 67 weights
    compare("gru", False, False, H=330, T=64, I=67, B=4, num_layers=1)  # 256 rows: all of W_ih packed
    assert column_split_calls() == before
