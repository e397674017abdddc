#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the side-by-side benchmark; extra arguments go to it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
"$PY" -m fusedrnn.bench "$@"
