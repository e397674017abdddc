"""The benchmark command runs end to end and writes what it promises (timings are not asserted)."""
import json

import pytest
import torch

from fusedrnn import bench


def test_bench_writes_json_and_compares_the_same_computation(tmp_path, capsys):
    rows = bench.main(["--models", "agnews_rnn", "--grid", "--cells", "gru", "--batch", "2", "--input", "8",
                       "--hidden", "4", "--seq-len", "5", "--layout", "dense,packed", "--mode", "train",
                       "--repeats", "1", "--warmup", "0", "--full", "--out", str(tmp_path), "--tag", "t"])
    names = [r["name"] for r in rows]
    assert names == ["agnews_rnn", "gru_b2_i8_h4_t5", "gru_b2_i8_h4_t5_packed"]
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["environment"]["device"] == "cpu" and "fusedrnn_step_gemm" in data["environment"]
    for r in data["results"]:
        assert r["torch_ms"] > 0 and r["fusedrnn_ms"] > 0 and r["ratio"] == pytest.approx(r["torch_ms"] / r["fusedrnn_ms"])
        assert r["reference"] == "native loop"
        assert (r["cell_loop_ms"] is None) == r["packed"]
        assert r["runs"] == 1
    out = capsys.readouterr().out
    assert "gru_b2_i8_h4_t5_packed" in out and "results:" in out


def test_cell_loop_reference_computes_what_torch_nn_computes():
    import torch

    case = bench.Case("x", "lstm", 3, 4, 2, 2, 5, bidirectional=True)
    module = torch.nn.LSTM(3, 4, 2, bidirectional=True)
    x = torch.randn(5, 2, 3)
    out, h = bench.make_cell_loop(case, module)(x)
    ref_out, (ref_h, _) = module(x)
    assert torch.allclose(out, ref_out, atol=1e-6) and torch.allclose(h, ref_h, atol=1e-6)


def test_bench_rejects_unknown_names():
    with pytest.raises(SystemExit):
        bench.main(["--models", "nope"])
    with pytest.raises(SystemExit):
        bench.main(["--models", "--grid", "--cells", "lstmx"])


def test_time_budget_stops_repeating():
    """With a budget a case stops after 3 runs once the budget is spent, or after 5 once every
    median is stable; without one (--full) it runs every repeat."""
    import time

    def sleeper(ms):
        return lambda: time.sleep(ms / 1000)

    fns = {"a": sleeper(2), "b": sleeper(1)}
    cpu = __import__("torch").device("cpu")
    ms, runs = bench.interleaved_ms(fns, cpu, warmup=1, repeats=50, budget_s=0.0)
    assert runs == 3 and set(ms) == {"a", "b"}
    ms, runs = bench.interleaved_ms(fns, cpu, warmup=1, repeats=50, budget_s=100.0, tolerance=1.0)
    assert runs == 5  # any change under 100%: stable as soon as it may stop
    ms, runs = bench.interleaved_ms(fns, cpu, warmup=0, repeats=7, budget_s=None)
    assert runs == 7 and ms["a"] > ms["b"] > 0


def test_quiet_fns_start_after_a_pause_that_the_budget_does_not_count():
    """A fn named in `quiet` (ONNX Runtime's, in run_case) starts each timed run quiet_s after the
    run before it ended, whichever order the round has; the others do not wait; the sleeps are not
    counted against the budget."""
    import time

    last_end = [None]
    gaps = {"a": [], "b": []}

    def fn(name):
        def run():
            if last_end[0] is not None:
                gaps[name].append(time.perf_counter() - last_end[0])
            last_end[0] = time.perf_counter()
        return run

    cpu = __import__("torch").device("cpu")
    fns = {"a": fn("a"), "b": fn("b")}
    ms, runs = bench.interleaved_ms(fns, cpu, warmup=0, repeats=6, budget_s=None, quiet=("b",), quiet_s=0.03)
    assert runs == 6 and len(gaps["b"]) == 6
    assert min(gaps["b"]) >= 0.03
    assert max(gaps["a"]) < 0.03
    # A budget of 0.1 s: the runs take next to nothing, so it runs every repeat (counting the 30 ms
    # sleeps, it would stop after the fourth round)
    ms, runs = bench.interleaved_ms(fns, cpu, warmup=0, repeats=12, budget_s=0.1, settle=100,
                                    quiet=("b",), quiet_s=0.03)
    assert runs == 12


def test_plot_groups_cases_and_switches_to_a_log_axis(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    import matplotlib.axes

    scales = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xscale", lambda self, v, **k: scales.append(v))
    rows = [{"name": "a", "mode": "infer", "ratio": 1.5}, {"name": "a", "mode": "train", "ratio": 2.0},
            {"name": "b", "mode": "infer", "ratio": 0.8}]
    assert bench.plot(rows, str(tmp_path / "p.png"), "t") and (tmp_path / "p.png").stat().st_size > 0
    assert scales == []
    rows.append({"name": "c", "mode": "train", "ratio": 37.0})
    assert bench.plot(rows, str(tmp_path / "q.png"), "t")
    assert scales == ["log"]


def test_cuda_rows_carry_the_path_and_the_models_time(monkeypatch):
    # On CUDA each row says which path ran and what the performance model predicts for the
    # recurrent loops (fusedrnn.gpu_model); shown here without a GPU through model_columns.
    from fusedrnn import gpu_model

    case = next(c for c in bench.MODELS if c.name == "imdb_gru_packed")
    monkeypatch.delenv("FUSEDRNN_CUDA_PATH", raising=False)
    cols = bench.model_columns(case, "train", "float32")
    assert cols["cuda_path"] == "persistent"
    expected = gpu_model.step_times("gru", 256, 64, "float32")["training_us"] * 256 * 2 * 2 / 1e3
    assert cols["model_loop_ms"] == pytest.approx(expected)
    monkeypatch.setenv("FUSEDRNN_CUDA_PATH", "standard")
    assert bench.model_columns(case, "infer", "bfloat16")["cuda_path"] == "standard"
    assert bench.model_columns(case, "infer", "float64") == {"cuda_path": "standard", "model_loop_ms": None}
    row = {"name": case.name, "cell": "gru", "mode": "train", "reference": "cudnn", "runs": 5, "torch_ms": 2.0,
           "fusedrnn_ms": 1.0, "ratio": 2.0, "cell_loop_ms": None, **cols}
    line = bench.format_row(row)
    assert line.split()[-2:] == ["persistent", f"{cols['model_loop_ms']:.3f}"]
    assert len(bench.HEADER + bench.MODEL_HEADER) == len(line)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_dtypes_run_on_the_cpu(dtype, tmp_path):
    rows = bench.main(["--models", "--grid", "--cells", "lstm", "--batch", "2", "--input", "8", "--hidden", "4",
                       "--seq-len", "5", "--mode", "both", "--repeats", "1", "--warmup", "0", "--dtype", dtype,
                       "--reference", "torch", "--out", str(tmp_path), "--tag", "t"])
    assert [(r["mode"], r["dtype"]) for r in rows] == [("infer", dtype), ("train", dtype)]
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["environment"]["dtype"] == dtype and all(r["fusedrnn_ms"] > 0 for r in data["results"])


def test_gpu_run_dry_run_prints_the_plan_within_ten_minutes():
    import os
    import re
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(["bash", os.path.join(root, "scripts", "gpu_run.sh"), "--dry-run"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    stages = re.findall(r"^\s+(\S+)\s+at most\s+(\d+) s", r.stdout, re.M)
    assert [s for s, _ in stages] == ["build", "ptxas", "pytest", "memcheck", "racecheck", "bench-f32",
                                      "bench-f32-tf32", "bench-bf16", "model"]
    assert sum(int(t) for _, t in stages) <= 600
    assert "--tf32 off" in r.stdout and "--tf32 on" in r.stdout and "--dtype bfloat16" in r.stdout
    assert "--seq-len 100,1000" in r.stdout and "--layout dense,packed" in r.stdout
    assert "--hidden 256,1024" in r.stdout and "--batch 1,16,64" in r.stdout


def test_onnx_runtime_is_a_second_reference(capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    dense = next(c for c in bench.MODELS if c.name == "agnews_lstm")
    packed = next(c for c in bench.MODELS if c.name == "agnews_lstm_packed")
    steps, _ = bench.make_steps(dense, "infer", torch.device("cpu"), ort=True)
    assert set(steps) == {"torch", "fusedrnn", "cell_loop", "ort"}
    assert "ort" not in bench.make_steps(packed, "infer", torch.device("cpu"), ort=True)[0]
    assert "ort" not in bench.make_steps(dense, "train", torch.device("cpu"), ort=True)[0]
    rows = bench.main(["--models", "agnews_rnn", "--mode", "both", "--reference", "torch,ort", "--repeats", "3",
                       "--warmup", "1", "--no-cell-loop", "--out", str(tmp_path), "--tag", "t"])
    infer, train = rows
    assert infer["ort_ms"] > 0 and infer["ort_ratio"] == pytest.approx(infer["ort_ms"] / infer["fusedrnn_ms"])
    assert train["ort_ms"] is None
    out = capsys.readouterr().out
    assert "ORT ms" in out and "ONNX Runtime" in out
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["results"][0]["ort_ms"] == infer["ort_ms"] and "onnxruntime" in saved["environment"]
    rows = bench.main(["--models", "agnews_rnn", "--mode", "infer", "--reference", "torch", "--repeats", "3",
                       "--warmup", "1", "--no-cell-loop", "--out", str(tmp_path), "--tag", "u"])
    assert rows[0]["ort_ms"] is None and "ORT ms" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--models", "agnews_rnn", "--reference", "tvm"])
