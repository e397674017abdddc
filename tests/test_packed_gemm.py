"""The CPU's packed-weight product (csrc/cpu/packed_gemm.cpp).

float32 step products that run one per thread (row blocks, tiny layers, one thread) go to an own
AVX2 kernel against W_hh packed in 16-column panels, in 6-row tiles; so does the input projection
of float32 layers, its rows split between threads; by default from 256 rows per layer call on
(FUSEDRNN_PACKED_GEMM=1, set by the small layer tests here: always). Here it is checked on its own
against float64 products over every tile height (1-13 and 32 rows: tiles of 1-6 rows), column
remainders past the 16-column panels, k from 1, accumulation into C, products in row chunks; then
through whole layers in float32 against torch.nn in float64 (step products with blocks forced,
input projections split between threads) and against the BLAS path. Likewise the weight-gradient
product g^T [a1 | a2 | 1] (packed in chunks of rows, the rows in segments, split between threads),
which those layers' backward passes run on.
"""
import itertools

import pytest
import torch

from fusedrnn import _C
from helpers import CELLS, assert_pair, assert_rel, run_pair

pytestmark = pytest.mark.skipif(not _C.packed_gemm(), reason="packed step product not in this build (no AVX2)")

# Every test on each instruction set the kernels have here: AVX2, and AVX-512 where the CPU has it.
ISAS = ["avx2"] + (["avx512"] if _C.packed_gemm() and _C.packed_isa() == "avx512" else [])


@pytest.fixture(autouse=True, params=ISAS)
def isa(request, monkeypatch):
    monkeypatch.setenv("FUSEDRNN_PACKED_ISA", request.param)
    assert _C.packed_isa() == request.param
    return request.param


gemm = torch.ops.fusedrnn._packed_step_gemm


@pytest.mark.parametrize("m,n,k", [
    (m, n, k) for m, n, k in itertools.product((1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 32), (1, 7, 16, 17, 40, 64, 100, 130),
                                               (1, 5, 13, 64))
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


@pytest.mark.parametrize("m,n,k", [(200, 1100, 600), (57, 530, 257), (33, 17, 4700), (1, 300, 1000), (48, 16, 256)])
def test_product_in_blocks(m, n, k):
    """Products of more than 32 rows in blocks: the weight's k rows 256 at a time (with a
    remainder), groups of 32 panels (an odd count in the last, for the AVX-512 pairs), chunks of
    24 rows; accumulation into c across the k blocks."""
    g = torch.Generator().manual_seed(m + n + k)
    a, w, c = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(m, n, generator=g)
    expected = a.double() @ w.double().t()
    assert (gemm(a, w, True, None).double() - expected).abs().max().item() <= 1e-6 * k
    assert (gemm(a, w, True, c).double() - (expected + c.double())).abs().max().item() <= 1e-6 * k
    wt = w.t().contiguous()  # the weight as [k, n]
    assert (gemm(a, wt, False, None).double() - expected).abs().max().item() <= 1e-6 * k


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


wgrad = torch.ops.fusedrnn._packed_weight_grad


def _wgrad_expected(g, a1, a2, ones):
    cols = [a1.double()] + ([a2.double()] if a2 is not None else [])
    if ones:
        cols.append(torch.ones(g.shape[0], 1, dtype=torch.float64))
    return g.double().t() @ torch.cat(cols, 1)


# Weight gradients g^T [a1 | a2 | 1]: rows of C 1-13 and 40 (every remainder of the 6-row tiles),
# columns past the 16-column panels (the ones column among them), panels wholly in a1, wholly in
# a2 (k2 70) or across their border, no rows at all, one row.
@pytest.mark.parametrize("n,m,k1,k2", [
    c for c in itertools.product((0, 1, 7, 300), (1, 5, 6, 7, 11, 12, 13, 40), (0, 1, 16, 21), (0, 3, 16, 70))
    if c[2] + c[3] > 0
])
@pytest.mark.parametrize("ones", [True, False])
def test_weight_grad_matches_float64(n, m, k1, k2, ones):
    gen = torch.Generator().manual_seed(n * 7 + m * 100 + k1 * 13 + k2)
    g, a1 = torch.randn(n, m, generator=gen), torch.randn(n, k1, generator=gen)
    a2 = torch.randn(n, k2, generator=gen) if k2 else None
    out = wgrad(g, a1, a2, ones, [n] if n else [])
    assert out.shape == (m, k1 + k2 + (1 if ones else 0))
    assert (out.double() - _wgrad_expected(g, a1, a2, ones)).abs().max().item() <= 1e-6 * max(n, 1)


@pytest.mark.parametrize("segments", [[3000], [1, 0, 999, 2000], [512] * 5 + [440], [7] * 428 + [4]])
def test_weight_grad_in_chunks_segments_and_threads(threads, segments):
    """3000 rows: packed in several chunks, cut into segments anywhere (a chunk spans segments,
    a segment spans chunks), and on 2 threads split into two shares of rows whose sums are
    added; 1 thread gives the same result within rounding."""
    gen = torch.Generator().manual_seed(len(segments))
    g, a1, a2 = (torch.randn(3000, 64, generator=gen), torch.randn(3000, 50, generator=gen),
                 torch.randn(3000, 70, generator=gen))
    expected = _wgrad_expected(g, a1, a2, True)
    results = []
    for n in (2, 1):
        threads(n)
        results.append(wgrad(g, a1, a2, True, segments))
        assert (results[-1].double() - expected).abs().max().item() <= 2e-3, f"{n} threads"
    assert_rel(results[0], results[1], 1e-6, "2 threads vs 1")


def test_weight_grad_of_a_large_layer():
    """A C larger than the caches (200 x 702: 34 G tiles, more than a block of 16; 44 panels, the
    last partial, an even count for the AVX-512 pairs and then an odd one), 700 rows: chunks of
    256, 256 and 188."""
    gen = torch.Generator().manual_seed(5)
    for k2 in (301, 285):  # 702 and 686 columns with the ones column: 44 and 43 panels
        g, a1, a2 = (torch.randn(700, 200, generator=gen), torch.randn(700, 400, generator=gen),
                     torch.randn(700, k2, generator=gen))
        out = wgrad(g, a1, a2, True, [300, 400])
        assert (out.double() - _wgrad_expected(g, a1, a2, True)).abs().max().item() <= 1e-6 * 700


@pytest.mark.parametrize("bad", ["dtype", "dim", "rows", "short", "long", "negative"])
def test_weight_grad_rejects_bad_input(bad):
    g, a1, a2, segments = torch.randn(6, 4), torch.randn(6, 3), torch.randn(6, 2), [6]
    if bad == "dtype":
        g = g.double()
    elif bad == "dim":
        g = g.view(6, 2, 2)
    elif bad == "rows":
        a2 = torch.randn(5, 2)
    elif bad == "short":
        segments = [2, 3]
    elif bad == "long":
        segments = [4, 4]
    else:
        segments = [7, -1]
    with pytest.raises(RuntimeError, match="_packed_weight_grad"):
        wgrad(g, a1, a2, True, segments)


# Layers in float32 against torch.nn in float64: batch 13 (blocks of 13, 7/6, 5/4/4 rows, and
# fewer as packed sequences end: tiles of every height), hidden 21 (G*H = 21..84: partial
# panels), two layers.
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


@pytest.mark.parametrize("cell,packed", [c for c in itertools.product(CELLS, (False, True))])
def test_layers_without_bias_in_float32(monkeypatch, threads, cell, packed):
    """No bias: the weight gradients' product without its column of ones."""
    monkeypatch.setenv("FUSEDRNN_PACKED_GEMM", "1")
    monkeypatch.setenv("FUSEDRNN_ROW_BLOCKS", "2")
    threads(2)
    torch.manual_seed(0)
    ref_vals, ref_grads, vals, grads = run_pair(cell, 2, True, False, packed, True, torch.float32,
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


def test_isa_switch_rejects_bad_values(monkeypatch):
    monkeypatch.setenv("FUSEDRNN_PACKED_ISA", "sse")
    with pytest.raises(RuntimeError, match="FUSEDRNN_PACKED_ISA must be avx2 or avx512, got 'sse'"):
        _C.packed_isa()
    with pytest.raises(RuntimeError, match="FUSEDRNN_PACKED_ISA must be avx2 or avx512"):
        gemm(torch.randn(2, 2), torch.randn(2, 2), True, None)


def test_rate_measurements_run_and_reject_bad_input():
    # Rates are not asserted (benchmarks measure speed); that they run and report something is.
    assert _C.fma_peak_gflops(10_000) > 0
    assert _C.gemm_gflops(32, 64, 16, 3) > 0
    with pytest.raises(RuntimeError, match="iters must be positive"):
        _C.fma_peak_gflops(0)
    with pytest.raises(RuntimeError, match="must be positive, got 0, 64, 16, 3"):
        _C.gemm_gflops(0, 64, 16, 3)


def test_gemm_efficiency_script_writes_its_table(tmp_path, capsys):
    import json
    import os
    import sys

    threads_before = torch.get_num_threads()

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
    try:
        import gemm_efficiency
    finally:
        sys.path.pop(0)
    out = tmp_path / "r.json"
    r = gemm_efficiency.main(["--rows", "32", "--hidden", "16", "--cells", "gru", "--rounds", "1",
                              "--json", str(out)])
    assert json.loads(out.read_text())["results"][0]["n"] == 48 and r["peak_gflops"] > 0
    assert "of peak" in capsys.readouterr().out
    assert torch.get_num_threads() == threads_before  # measured on one thread, the caller's count back
