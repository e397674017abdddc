#!/usr/bin/env bash
# Sets up (scripts/setup.sh: also matplotlib for the plot, tqdm for the progress bar) and runs the
# side-by-side benchmark on its defaults: the documented models' shapes and a few larger layers, on
# the GPU when there is one, each case within a time budget (--full: 20 runs each). Extra arguments
# go to it (python -m fusedrnn.bench --help). Results and the plot go to fusedrnn-bench/ unless
# --out says otherwise.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
"$PY" -m fusedrnn.bench "$@"
