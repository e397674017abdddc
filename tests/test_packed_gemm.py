"""The CPU's packed-weight product (csrc/cpu/packed_gemm.cpp).

float32 step products that run one per thread (row blocks, tiny layers, one thread) go to an own
AVX2 kernel against W_hh packed in 16-column panels, in 6-row tiles; so does the input projection
of float32 layers, its rows split between threads; by default from 256 rows per layer call on
(FUSEDRNN_PACKED_GEMM=1, set by the small layer tests here: always). Here it is checked on its own
against float64 products over every row remainder (1-5 rows past the 6-row tiles), column
remainders past the 16-column panels, k from 1, accumulation into C, products in row chunks; then
through whole layers in float32 against torch.nn in float64 (step products with blocks forced,
input projections split between threads) and against the BLAS path.
"""
import itertools

import pytest
import torch

from fusedrnn import _C
from helpers import CELLS, assert_pair, assert_rel, run_pair

pytestmark = pytest.mark.skipif(not _C.packed_gemm(), reason="packed step product not in this build (no AVX2)")

gemm = torch.ops.fusedrnn._packed_step_gemm


@pytest.mark.parametrize("m,n,k", [
    (m, n, k) for m, n, k in itertools.product((1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 32), (1, 7, 16, 17, 40), (1, 5, 64))
])
@pytest.mark.parametrize("transpose_w", [True, False])
def test_product_matches_float64(m, n, k, transpose_w):
    g = torch.Generator().manual_seed(m * 1000 + n * 10 + k)
    a = torch.randn(m, k, generator=g)
    w = torch.randn(n, k, generator=g) if transpose_w else torch.randn(k, n, generator=g)
    expected = a.double() @ (w.double().t() if transpose_w else w.double())
    out = gemm(a, w, transpose_w, None)
    assert out.shape == (m, n)
    # float32 sums of k products of N(0,1) numbers: error ~ sqrt(k) * 6e-8 * |terms|.
    assert (out.double() - expected).abs().max().item() <= 1e-5 * k
    c = torch.randn(m, n, generator=g)
    out_acc = gemm(a, w, transpose_w, c)
    assert (out_acc.double() - (expected + c.double())).abs().max().item() <= 1e-5 * k + 1e-6
    assert torch.equal(c, c.clone())  # c itself is not written


@pytest.mark.parametrize("m,n,k", [(100, 40, 300), (61, 17, 128), (13, 33, 1000)])
def test_product_in_row_chunks(m, n, k):
    """Products whose A exceeds 32 KB run in chunks of rows (every panel over each chunk)."""
    g = torch.Generator().manual_seed(k)
    a, w, c = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(m, n, generator=g)
    expected = a.double() @ w.double().t()
    assert (gemm(a, w, True, None).double() - expected).abs().max().item() <= 1e-6 * k
    assert (gemm(a, w, True, c).double() - (expected + c.double())).abs().max().item() <= 1e-6 * k


def test_product_on_strided_inputs():
    a = torch.randn(20, 9)[:, ::3]  # (20, 3), not contiguous
    w = torch.randn(3, 40).t()      # (40, 3) as a transposed view
    assert_rel(gemm(a, w, True, None), a.double() @ w.double().t(), 1e-6, "strided")


@pytest.mark.parametrize("bad", ["dtype", "dim", "shape", "c"])
def test_product_rejects_bad_input(bad):
    a, w, c = torch.randn(4, 3), torch.randn(5, 3), None
    if bad == "dtype":
        a = a.double()
    elif bad == "dim":
        a = a.view(2, 2, 3)
    elif bad == "shape":
        w = torch.randn(5, 4)
    else:
        c = torch.randn(4, 6)
    with pytest.raises(RuntimeError, match="_packed_step_gemm"):
        gemm(a, w, True, c)


def test_off_switch(monkeypatch):
    monkeypatch.setenv("FUSEDRNN_PACKED_GEMM", "0")
    assert not _C.packed_gemm()
    with pytest.raises(RuntimeError, match="FUSEDRNN_PACKED_GEMM=0"):
        gemm(torch.randn(2, 2), torch.randn(2, 2), True, None)


# Layers in float32 against torch.nn in float64: batch 13 (blocks of 13, 7/6, 5/4/4 rows: every
# remainder of the 6-row tiles occurs), hidden 21 (G*H = 21..84: partial panels), two layers.
@pytest.mark.parametrize("cell,packed,bidirectional,blocks", [
    c for c in itertools.product(CELLS, (False, True), (False, True), ("1", "2", "3"))
])
def test_layers_in_float32(monkeypatch, threads, cell, packed, bidirectional, blocks):
    monkeypatch.setenv("FUSEDRNN_PACKED_GEMM", "1")  # these few rows would go to the BLAS by default
    monkeypatch.setenv("FUSEDRNN_ROW_BLOCKS", blocks)
    threads(1 if blocks == "1" else 2)  # one block on one thread: products one per thread too
    torch.manual_seed(0)
    ref_vals, ref_grads, vals, grads = run_pair(cell, 2, bidirectional, True, packed, True, torch.float32,
                                                T=6, B=13, I=5, H=21)
    assert_pair(ref_vals, ref_grads, vals, grads, 2e-6, 2e-5)


def test_lstm_projections_in_float32(monkeypatch, threads):
    monkeypatch.setenv("FUSEDRNN_PACKED_GEMM", "1")
    monkeypatch.setenv("FUSEDRNN_ROW_BLOCKS", "2")
    threads(2)
    torch.manual_seed(0)
    ref_vals, ref_grads, vals, grads = run_pair("lstm", 2, True, True, True, True, torch.float32, proj_size=7,
                                                T=6, B=13, I=5, H=21)
    assert_pair(ref_vals, ref_grads, vals, grads, 2e-6, 2e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_big_input_projection_in_float32(threads, cell):
    """Input projection of 2000 rows x 300 inputs (enough rows for the default rule to pack):
    split between 2 threads, in row chunks, into rows padded to 64 bytes (hidden 23: G*H of
    23..92)."""
    threads(2)
    torch.manual_seed(0)
    ref_vals, ref_grads, vals, grads = run_pair(cell, 1, False, True, False, True, torch.float32,
                                                T=50, B=40, I=300, H=23)
    assert_pair(ref_vals, ref_grads, vals, grads, 5e-6, 5e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_same_results_as_the_blas_path(monkeypatch, threads, cell):
    """The kernel (forced) and the BLAS compute the same products (float32 rounding apart)."""
    threads(2)
    monkeypatch.setenv("FUSEDRNN_ROW_BLOCKS", "2")
    results = []
    for switch in ("1", "0"):
        monkeypatch.setenv("FUSEDRNN_PACKED_GEMM", switch)
        torch.manual_seed(1)
        results.append(run_pair(cell, 1, False, True, False, True, torch.float32, T=8, B=20, I=9, H=40)[2:])
    (vals_k, grads_k), (vals_b, grads_b) = results
    for a, e in zip(vals_k + grads_k, vals_b + grads_b):
        assert_rel(a, e, 2e-5, "kernel vs BLAS")
