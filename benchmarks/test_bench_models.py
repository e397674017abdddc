"""pytest-benchmark suite: fusedrnn and torch.nn side by side at the documented models' shapes.

    bash scripts/bench-suite.sh            (or: python -m pytest benchmarks --benchmark-only)

Not part of the test run (pyproject's testpaths is tests/). Compare with --benchmark-group-by=param:case.
"""
import pytest
import torch

from fusedrnn.bench import MODELS, make_steps

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("impl", ["torch", "fusedrnn"])
@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize("case", MODELS, ids=[c.name for c in MODELS])
def test_documented_model_shape(benchmark, case, mode, impl):
    steps, _ = make_steps(case, mode, DEVICE, cell_loop=False)
    step = steps[impl]
    if DEVICE.type == "cuda":
        def run():
            step()
            torch.cuda.synchronize()
    else:
        run = step
    benchmark.group = f"{case.name}-{mode}"
    benchmark.pedantic(run, warmup_rounds=2, rounds=10, iterations=1)
