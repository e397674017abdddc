"""The CPU's row blocks: each thread takes a block of the batch through every step on its own.

The loop runs on P blocks of rows (P = threads, when the layer has work enough; packed batches
cut where summed lengths are even). The other tests' small shapes mostly run one block, so here
FUSEDRNN_ROW_BLOCKS forces 1, 2, 3 or more blocks than rows, on 2 or 3 threads, dense and packed,
both directions, with projections too; results must match torch.nn (float64, 1e-10) for every P.
"""
import itertools

import pytest
import torch

import fusedrnn.functional as FR
from helpers import CELLS, assert_pair, assert_rel, make_nn, run_pair


def run_both(cell, bidirectional, packed, proj_size=0):
    """torch.nn and fusedrnn on one 2-layer float64 case (T 7, batch 5, input 4, hidden 11)."""
    torch.manual_seed(0)
    ref_vals, ref_grads, vals, grads = run_pair(cell, 2, bidirectional, True, packed, True, torch.float64,
                                                proj_size=proj_size, T=7, B=5, I=4, H=11)
    return (ref_vals, ref_grads), (vals, grads)


@pytest.mark.parametrize("cell,packed,bidirectional,blocks,nthreads", [
    c for c in itertools.product(CELLS, (False, True), (False, True), ("1", "2", "3", "9"), (2, 3))
    if not (c[3] == "1" and c[4] == 3)
])
def test_row_blocks_match_torch(monkeypatch, threads, cell, packed, bidirectional, blocks, nthreads):
    monkeypatch.setenv("FUSEDRNN_ROW_BLOCKS", blocks)
    threads(nthreads)
    (ref_vals, ref_grads), (vals, grads) = run_both(cell, bidirectional, packed)
    assert_pair(ref_vals, ref_grads, vals, grads, 1e-10, 1e-10)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("blocks", ["2", "3"])
def test_row_blocks_with_projections(monkeypatch, threads, packed, blocks):
    monkeypatch.setenv("FUSEDRNN_ROW_BLOCKS", blocks)
    threads(2)
    (ref_vals, ref_grads), (vals, grads) = run_both("lstm", True, packed, proj_size=4)
    assert_pair(ref_vals, ref_grads, vals, grads, 1e-10, 1e-10)


@pytest.mark.parametrize("cell", CELLS)
def test_default_blocks_on_a_big_layer(threads, cell):
    """A layer big enough for the default rule to cut it (2 threads, 2 blocks) in float32."""
    threads(2)
    torch.manual_seed(0)
    m = make_nn(cell, 16, 48, dtype=torch.float64)
    x = torch.randn(30, 8, 16, dtype=torch.float64)
    ref_out, _ = m(x)
    out, _ = FR.rnn(cell, x.float(), None, [w.detach().float() for w in m._flat_weights], num_layers=1,
                    bias=True, bidirectional=False)
    assert_rel(out.double(), ref_out.detach(), 1e-5)


@pytest.mark.parametrize("value", ["junk", "-1", ""])
def test_junk_block_count_is_ignored(monkeypatch, value):
    """A FUSEDRNN_ROW_BLOCKS that is not a count falls back to the default rule, never crashes."""
    monkeypatch.setenv("FUSEDRNN_ROW_BLOCKS", value)
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    m = make_nn("gru", 4, 16)
    out, h = FR.rnn("gru", x, None, [w.detach() for w in m._flat_weights], num_layers=1, bias=True,
                    bidirectional=False)
    ref_out, ref_h = m(x)
    assert_rel(out, ref_out.detach(), 1e-10)


@pytest.mark.parametrize("shape", [(6, 3, 8, 24), (2, 1200, 8, 2), (40, 64, 32, 64)])
def test_thread_count_unchanged(threads, shape):
    """Blocks and tiny layers hold the BLAS to one thread (MKL's thread-local setting); the caller's
    thread count must survive it (setting it inside a parallel region once leaked into OpenMP's)."""
    threads(2)
    T, B, I, H = shape
    m = make_nn("lstm", I, H, dtype=torch.float32)
    x = torch.randn(T, B, I, requires_grad=True)
    out, _ = FR.rnn("lstm", x, None, [w.detach().requires_grad_() for w in m._flat_weights], num_layers=1,
                    bias=True, bidirectional=False)
    out.sum().backward()
    assert torch.get_num_threads() == 2
