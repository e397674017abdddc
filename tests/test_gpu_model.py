"""fusedrnn.gpu_model, the persistent kernels' performance model: its layout mirrors the kernels'
(the shared memory it predicts is what the emulated launch asks for), its page (docs/gpu-model.md)
is its current output, and it covers the shapes issue 17 names."""
import os
import re

import pytest
import torch

import fusedrnn
from fusedrnn import gpu_model
from fusedrnn.bench import MODELS
from helpers import require_emulation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PTXAS = os.path.join(ROOT, "benchmarks", "results", "ptxas-sm90.txt")


def test_the_page_is_the_models_output():
    with open(os.path.join(ROOT, "docs", "gpu-model.md")) as f:
        page = f.read()
    for dtype in ("float32", "bfloat16"):
        assert gpu_model.table(dtype, PTXAS, markdown=True) in page, f"docs/gpu-model.md's {dtype} table is stale"


def test_every_documented_shape_and_hidden_256_and_1024_at_batch_1_16_64():
    names = [row[0] for row in gpu_model.shapes()]
    assert all(c.name in names for c in MODELS)
    for cell in ("lstm", "gru"):
        for H in (256, 1024):
            for B in (1, 16, 64):
                assert f"{cell}_h{H}_b{B}" in names


def test_ptxas_record_is_read():
    regs = gpu_model.read_ptxas(PTXAS)
    assert set(regs) == {(p, d) for p in ("forward", "backward") for d in ("float32", "bfloat16", "float16")}
    assert all(0 < r <= 255 for r in regs.values())


def test_more_rows_or_units_cost_more():
    t = [gpu_model.step_times("lstm", H, B, "float32") for H, B in [(256, 16), (256, 64), (1024, 64)]]
    assert t[0]["forward_us"] < t[1]["forward_us"] < t[2]["forward_us"]
    assert all(x["training_us"] > x["forward_us"] >= gpu_model.H100.grid_sync_us for x in t)


@pytest.mark.parametrize("cell,H,B,dtype", [("lstm", 37, 9, torch.float32), ("gru", 64, 33, torch.bfloat16),
                                            ("rnn_tanh", 20, 3, torch.float16), ("lstm", 50, 40, torch.bfloat16)])
def test_the_models_shared_memory_is_what_the_kernels_ask_for(cell, H, B, dtype, monkeypatch):
    # The emulator counts the dynamic shared memory of cooperative launches: of this call's two (the
    # forward's, then the backward's) they must be the model's forward_smem and backward_smem.
    require_emulation()
    import fusedrnn.emulation as emulation

    monkeypatch.setenv("FUSEDRNN_CUDA_PATH", "persistent")
    name = str(dtype).replace("torch.", "")
    with emulation.enabled(seed=0, sm_count=4):
        cls = {"lstm": fusedrnn.LSTM, "gru": fusedrnn.GRU, "rnn_tanh": fusedrnn.RNN}[cell]
        m = cls(5, H).to(dtype)
        x = torch.randn(3, B, 5, dtype=dtype, requires_grad=True)
        before = emulation.stats()
        m(x)[0].float().sum().backward()
        after = emulation.stats()
    assert after["cooperative_launches"] - before["cooperative_launches"] == 2
    p = gpu_model.plan(cell, H, B, name, gpu_model.Device(sms=4))
    assert after["last_cooperative_smem"] == p["backward_smem"]
    assert after["cooperative_smem_bytes"] - before["cooperative_smem_bytes"] == p["forward_smem"] + p["backward_smem"]


def test_gpu_smoke_script_runs_on_the_emulated_backend():
    # scripts/gpu_smoke.py is what compute-sanitizer runs on the GPU (scripts/gpu_run.sh); here it
    # runs on the emulated backend, so that it is known to work before a GPU session spends time on it.
    require_emulation()
    import subprocess
    import sys

    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu_smoke.py"), "--emulated", "lstm"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "gpu_smoke: 8/8 ok"
