#!/usr/bin/env bash
# Sets up an environment and builds fusedrnn in place. Sourced by test.sh and bench.sh; sets PY.
#   FUSEDRNN_VENV=.venv            where the virtual environment lives
#   FUSEDRNN_TORCH=torch==2.13.0   the torch to install into it (2.13.0: a CPU build, quick to install)
#   FUSEDRNN_SYSTEM_PYTHON=1       use python3 as it is, installing nothing (e.g. a machine with no
#                                  network and torch preinstalled)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ "${FUSEDRNN_SYSTEM_PYTHON:-0}" = 1 ]; then
  PY=python3
else
  VENV="${FUSEDRNN_VENV:-.venv}"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  PY="$ROOT/$VENV/bin/python"
  echo "== installing ${FUSEDRNN_TORCH:-torch==2.13.0} and the build and test tools into $VENV"
  "$PY" -m pip install -q --disable-pip-version-check "${FUSEDRNN_TORCH:-torch==2.13.0}" \
    ninja pybind11 pytest pytest-benchmark setuptools wheel numpy matplotlib tqdm \
    hypothesis onnx onnxscript onnxruntime
fi
"$PY" -c "import torch; print('== torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "== building fusedrnn (pip install --no-build-isolation -e .)"
MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" -m pip install -q --disable-pip-version-check --no-build-isolation \
  --no-deps -e . || { echo "fusedrnn failed to build" >&2; exit 1; }
export PY
