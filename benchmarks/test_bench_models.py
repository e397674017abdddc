"""pytest-benchmark suite: fusedrnn, torch.nn and (CPU inference, dense) ONNX Runtime side by side at
the documented models' shapes.

    bash scripts/bench-suite.sh            (or: python -m pytest benchmarks --benchmark-only)

Not part of the test run (pyproject's testpaths is tests/). Compare with --benchmark-group-by=param:case.
"""
import pytest
import torch

from fusedrnn.bench import MODELS, make_steps, ort_available

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("impl", ["torch", "fusedrnn", "ort"])
@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize("case", MODELS, ids=[c.name for c in MODELS])
def test_documented_model_shape(benchmark, case, mode, impl):
    if impl == "ort" and not (ort_available() and mode == "infer" and DEVICE.type == "cpu" and not case.packed):
        pytest.skip("ONNX Runtime: CPU inference of dense cases, with onnxruntime and onnxscript installed")
    steps, _ = make_steps(case, mode, DEVICE, cell_loop=False, ort=impl == "ort")
    step = steps[impl]
    if DEVICE.type == "cuda":
        def run():
            step()
            torch.cuda.synchronize()
    else:
        run = step
    benchmark.group = f"{case.name}-{mode}"
    benchmark.pedantic(run, warmup_rounds=2, rounds=10, iterations=1)
