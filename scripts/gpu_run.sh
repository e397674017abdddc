#!/usr/bin/env bash
# One call on the GPU machine (torch preinstalled, no network): build with CUDA, run the whole test
# suite with the CUDA tests required, then the benchmark against cuDNN; everything goes to
# benchmarks/results/gpu-<commit>.log (and the benchmark's JSON beside it), with the commit, GPU,
# torch and CUDA versions and the pytest summary at the top. Usage: bash scripts/gpu_run.sh [OUTDIR]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-benchmarks/results}"
mkdir -p "$OUT"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
LOG="$OUT/gpu-$COMMIT.log"
export FUSEDRNN_SYSTEM_PYTHON=1 FUSEDRNN_CUDA=1 FUSEDRNN_EXPECT_CUDA=1
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
{
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
  python3 -c "import torch; print('torch:', torch.__version__, '| cuda:', torch.version.cuda, '| cudnn:', torch.backends.cudnn.version())"
  "${CUDA_HOME}/bin/nvcc" --version | tail -1 | sed 's/^/nvcc: /'
} > "$LOG.head" 2>&1
{
  echo "=== build"
  source scripts/setup.sh
  echo "=== tests"
  python3 -m pytest tests -q -rs 2>&1 | tee "$LOG.pytest"
  echo "=== benchmark (fusedrnn vs torch.nn on cuDNN, same process)"
  python3 -m fusedrnn.bench --out "$OUT" --tag "gpu-$COMMIT"
} > "$LOG.body" 2>&1
{
  cat "$LOG.head"
  echo "pytest summary: $(tail -1 "$LOG.pytest" 2>/dev/null)"
  echo
  cat "$LOG.body"
} > "$LOG"
rm -f "$LOG.head" "$LOG.body" "$LOG.pytest"
echo "wrote $LOG"
tail -40 "$LOG"
