#!/usr/bin/env bash
# The wheel as a user installs it: builds it (pip wheel --no-build-isolation, against the torch that
# scripts/setup.sh installed), installs it with torch into a fresh environment (build/wheel-venv),
# runs a forward and backward against torch.nn from outside the source tree, then the module
# conformance tests from the checkout against the installed wheel (tests/conftest.py keeps the
# checkout's fusedrnn/ from shadowing it). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
rm -rf dist build/wheel-venv
echo "== building the wheel"
MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps \
  -w dist . > build/wheel.log 2>&1 || { tail -40 build/wheel.log >&2; exit 1; }
WHEEL="$(ls dist/fusedrnn-*.whl)"
echo "== installing $WHEEL into a fresh environment"
python3 -m venv build/wheel-venv
TORCH="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
build/wheel-venv/bin/python -m pip install -q --disable-pip-version-check "torch==$TORCH" pytest numpy "$WHEEL"
echo "== smoke test from outside the source tree"
(cd /tmp && "$ROOT/build/wheel-venv/bin/python" - <<'PY'
import os, torch, fusedrnn
assert "site-packages" in fusedrnn.__file__, fusedrnn.__file__
torch.manual_seed(0)
ref = torch.nn.LSTM(5, 7, 2, bidirectional=True)
ours = fusedrnn.LSTM(5, 7, 2, bidirectional=True)
ours.load_state_dict(ref.state_dict())
x = torch.randn(6, 3, 5, requires_grad=True)
(a, _), (b, _) = ours(x), ref(x)
assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
a.sum().backward()
g = x.grad.clone(); x.grad = None
b.sum().backward()
assert torch.allclose(g, x.grad, atol=1e-5)
print("wheel OK:", fusedrnn.__file__)
PY
)
echo "== the module conformance tests against the installed wheel"
FUSEDRNN_EXPECT_WHEEL=1 build/wheel-venv/bin/python -m pytest -p no:cacheprovider tests/test_build.py \
  tests/test_modules.py tests/test_convert.py "$@"
