#!/usr/bin/env bash
# Sets up (scripts/setup.sh, plus matplotlib for the plot) and runs the side-by-side benchmark on its
# defaults: the documented models' shapes, on the GPU when there is one. Extra arguments go to it
# (python -m fusedrnn.bench --help). Results and the plot go to fusedrnn-bench/ unless --out says otherwise.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if [ "${FUSEDRNN_SYSTEM_PYTHON:-0}" != 1 ]; then
  "$PY" -m pip install -q --disable-pip-version-check matplotlib || echo "(no matplotlib: the plot is skipped)"
fi
"$PY" -m fusedrnn.bench "$@"
