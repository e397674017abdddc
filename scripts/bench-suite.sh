#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the pytest-benchmark suite in benchmarks/; extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
"$PY" -m pytest benchmarks --benchmark-only --benchmark-group-by=group --benchmark-columns=median,iqr,rounds "$@"
