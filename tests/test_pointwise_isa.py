"""The CPU pointwise passes' three builds (csrc/cpu/pointwise.h): the AVX2 one ("avx2"); the same
code compiled with AVX-512 enabled, 8-lane vectors in 32 registers ("avx512-256"); and, the default
where the CPU has AVX-512 ("avx512"), the float32 forward pass on 16-lane vectors (vec512.h: its own
exp, tanh and reciprocal-based quotients) with the other passes as in avx512-256. The choice is
read once per process, so each build runs in a child process: forward and backward of every cell,
dense and packed, at hidden sizes with paired, single and partial vectors of both widths, against
torch.nn in float64; the builds must also agree with each other to a few float32 roundings. A bad
value is an error that names the variable."""
import json
import os
import subprocess
import sys

import pytest

CHILD = r"""
import json, sys, torch
from torch.nn.utils.rnn import pack_padded_sequence
sys.path.insert(0, sys.argv[1])
import fusedrnn.functional as FR
from helpers import CELLS, make_nn, rel_err
torch.set_num_threads(2)
worst, outputs = 0.0, []
for cell in CELLS:
    for H, packed in ((5, False), (16, True), (37, False), (48, False), (64, True)):
        torch.manual_seed(H)
        m = make_nn(cell, 7, H, num_layers=1)
        T, B = 6, 5
        x = torch.randn(T, B, 7, dtype=torch.float64)
        lengths = torch.tensor([6, 1, 4, 6, 3])
        results = []
        for dtype, ours in ((torch.float64, False), (torch.float32, True)):
            xi = x.to(dtype).requires_grad_(True)
            ws = [w.detach().to(dtype).requires_grad_(True) for w in m._flat_weights]
            inp = pack_padded_sequence(xi, lengths, enforce_sorted=False) if packed else xi
            if ours:
                out, _ = FR.rnn(cell, inp, None, ws)
            else:
                ws = list(m.parameters())  # torch.nn in float64, its own parameters
                xi = x.clone().requires_grad_(True)
                inp = pack_padded_sequence(xi, lengths, enforce_sorted=False) if packed else xi
                out, _ = m(inp)
            data = out.data if packed else out
            grads = torch.autograd.grad((data * torch.linspace(-1, 1, data.numel(), dtype=dtype).view_as(data)).sum(),
                                        [xi, *ws])
            results.append([data, *grads])
        for a, e in zip(results[1], results[0]):
            worst = max(worst, rel_err(a.double(), e.detach()))
        outputs.append([t.detach().double().flatten().tolist() for t in results[1]])
print(json.dumps({"worst": worst, "outputs": outputs}))
"""


def cpu_has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return all(f in flags for f in ("avx512f", "avx512vl", "avx512bw", "avx512dq"))


WIDE = ["avx512-256", "avx512"]


def run_child(value):
    env = dict(os.environ, FUSEDRNN_POINTWISE_ISA=value)
    here = os.path.dirname(os.path.abspath(__file__))
    return subprocess.run([sys.executable, "-c", CHILD, here], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def builds():
    values = ["avx2"] + (WIDE if cpu_has_avx512() else [])
    out = {}
    for v in values:
        r = run_child(v)
        assert r.returncode == 0, r.stderr[-2000:]
        out[v] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("value", ["avx2", *WIDE])
def test_each_build_matches_torch(builds, value):
    if value not in builds:
        pytest.skip("this CPU has no AVX-512")
    assert builds[value]["worst"] <= 2e-5, builds[value]["worst"]


@pytest.mark.parametrize("value", WIDE)
def test_builds_agree(builds, value):
    if value not in builds:
        pytest.skip("this CPU has no AVX-512")
    a, b = builds["avx2"]["outputs"], builds[value]["outputs"]
    assert len(a) == len(b)
    for case_a, case_b in zip(a, b):
        for ta, tb in zip(case_a, case_b):
            scale = max(1.0, max(abs(v) for v in ta))
            assert max(abs(x - y) for x, y in zip(ta, tb)) <= 1e-6 * scale


def test_bad_value_is_an_error():
    r = run_child("sse2")
    assert r.returncode != 0
    assert "FUSEDRNN_POINTWISE_ISA must be avx2, avx512 or avx512-256, got 'sse2'" in r.stderr


@pytest.mark.skipif(cpu_has_avx512(), reason="this CPU has AVX-512")
@pytest.mark.parametrize("value", WIDE)
def test_avx512_asked_without_it_is_an_error(value):
    r = run_child(value)
    assert r.returncode != 0
    assert f"FUSEDRNN_POINTWISE_ISA={value}, but this CPU has no AVX-512" in r.stderr
