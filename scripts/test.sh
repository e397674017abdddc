#!/usr/bin/env bash
# Sets up (scripts/setup.sh), builds fusedrnn with its emulated CUDA backend (FUSEDRNN_EMU=1: the CUDA
# kernels compiled for the CPU, fusedrnn.emulation) and runs the test suite; extra arguments go to pytest.
set -euo pipefail
export FUSEDRNN_EMU=1 FUSEDRNN_EXPECT_EMU=1
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
"$PY" -m pytest tests "$@"
