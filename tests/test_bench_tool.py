"""The benchmark command runs end to end and writes what it promises (timings are not asserted)."""
import json

import pytest

from fusedrnn import bench


def test_bench_writes_json_and_compares_the_same_computation(tmp_path, capsys):
    rows = bench.main(["--models", "agnews_rnn", "--grid", "--cells", "gru", "--batch", "2", "--input", "8",
                       "--hidden", "4", "--seq-len", "5", "--layout", "dense,packed", "--mode", "train",
                       "--repeats", "1", "--warmup", "0", "--out", str(tmp_path), "--tag", "t"])
    names = [r["name"] for r in rows]
    assert names == ["agnews_rnn", "gru_b2_i8_h4_t5", "gru_b2_i8_h4_t5_packed"]
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["environment"]["device"] == "cpu" and "fusedrnn_step_gemm" in data["environment"]
    for r in data["results"]:
        assert r["torch_ms"] > 0 and r["fusedrnn_ms"] > 0 and r["ratio"] == pytest.approx(r["torch_ms"] / r["fusedrnn_ms"])
        assert r["reference"] == "native loop"
        assert (r["cell_loop_ms"] is None) == r["packed"]
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
