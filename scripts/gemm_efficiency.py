"""The step products' efficiency: fusedrnn's packed kernel against this machine's measured peak.

The peak: 12 independent FMA chains on registers, no memory traffic, with the kernels' ISA (AVX2
or AVX-512), on one thread (fusedrnn._C.fma_peak_gflops). The products: C[m, G*H] = h[m, H] @
W_hh^T, W_hh packed once and the same product repeated, as in a step loop, on one thread (the step
products run one per thread) (fusedrnn._C.gemm_gflops); libtorch's BLAS (torch.mm, one thread) at
the same shapes for comparison. Each figure is the best of --rounds rounds, the peak measured
in every round between the products, since these shared machines drift by 20-30% within minutes.

    python scripts/gemm_efficiency.py [--rows 32,64] [--hidden 64,128,256,512,1024] [--json out.json]
"""
import argparse
import json
import time

import torch

from fusedrnn import _C

CELLS = {"lstm": 4, "gru": 3, "rnn": 1}


def blas_gflops(m, n, k, seconds=0.05):
    a, w = torch.randn(m, k), torch.randn(n, k)
    out = torch.empty(m, n)
    for _ in range(3):
        torch.mm(a, w.t(), out=out)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, w.t(), out=out)
        reps += 1
    return 2.0 * m * n * k * reps / (time.perf_counter() - t0) * 1e-9


def measure(rows, hidden, cells, rounds, seconds=0.05):
    """On one thread (the step products run one per thread); the caller's thread count comes back."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure(rows, hidden, cells, rounds, seconds)
    finally:
        torch.set_num_threads(before)


def _measure(rows, hidden, cells, rounds, seconds):
    peak_iters = 2_000_000
    shapes = [(c, m, h) for c in cells for h in hidden for m in rows]
    best = {s: [0.0, 0.0] for s in shapes}
    peaks = []
    for _ in range(rounds):
        peaks.append(_C.fma_peak_gflops(peak_iters))
        for cell, m, h in shapes:
            n, k = CELLS[cell] * h, h
            repeats = max(3, int(seconds * 1e9 * peaks[-1] * 0.5 / (2.0 * m * n * k)))
            best[(cell, m, h)][0] = max(best[(cell, m, h)][0], _C.gemm_gflops(m, n, k, repeats))
            best[(cell, m, h)][1] = max(best[(cell, m, h)][1], blas_gflops(m, n, k, seconds))
        peaks.append(_C.fma_peak_gflops(peak_iters))
    peak = max(peaks)
    results = [{"cell": c, "rows": m, "hidden": h, "n": CELLS[c] * h, "k": h, "fusedrnn_gflops": f,
                "blas_gflops": b, "fusedrnn_of_peak": f / peak, "blas_of_peak": b / peak}
               for (c, m, h), (f, b) in best.items()]
    return {"isa": _C.packed_isa(), "peak_gflops": peak, "peaks": peaks, "results": results}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="32,64")
    parser.add_argument("--hidden", default="64,128,256,512,1024")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    cells = args.cells.split(",")
    if not _C.packed_gemm():
        parser.error("the packed kernels are not in this build (no AVX2) or are off (FUSEDRNN_PACKED_GEMM=0)")
    if any(c not in CELLS for c in cells):
        parser.error(f"--cells takes {', '.join(CELLS)}")
    r = measure([int(x) for x in args.rows.split(",")], [int(x) for x in args.hidden.split(",")], cells,
                args.rounds)
    print(f"peak ({r['isa']}, one thread, best of {len(r['peaks'])}): {r['peak_gflops']:.1f} GFLOP/s "
          f"(all: {', '.join(f'{p:.1f}' for p in r['peaks'])})")
    print(f"{'cell':<5} {'rows':>4} {'hidden':>6} {'n x k':>11} {'fusedrnn':>9} {'of peak':>7} {'BLAS':>7} {'of peak':>7}")
    for x in r["results"]:
        print(f"{x['cell']:<5} {x['rows']:>4} {x['hidden']:>6} {x['n']:>5}x{x['k']:<5} {x['fusedrnn_gflops']:>9.1f} "
              f"{x['fusedrnn_of_peak']:>7.0%} {x['blas_gflops']:>7.1f} {x['blas_of_peak']:>7.0%}")
    worst = min(r["results"], key=lambda x: x["fusedrnn_of_peak"])
    print(f"lowest: {worst['cell']} rows {worst['rows']} hidden {worst['hidden']}: {worst['fusedrnn_of_peak']:.0%} of peak")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return r


if __name__ == "__main__":
    main()
