#!/usr/bin/env bash
# The complete GPU check, in one call on the GPU machine (torch preinstalled, no network; an H200 or
# H100 with 16 cores: under 10 minutes, each stage with its own time limit). Everything goes into one folder,
# benchmarks/results/gpu-<commit>/ (or OUTDIR):
#   summary.txt    commit, GPU, driver, torch, CUDA, cuDNN, nvcc; each stage's status and time; the
#                  pytest summary; the sanitizers' summaries
#   build.txt      the build (TORCH_CUDA_ARCH_LIST=9.0, all cores)
#   ptxas.txt      registers / shared memory / spills / stack of every kernel (also ptxas-report.txt),
#                  and the SASS check (HMMA in the half / bfloat16 persistent kernels)
#   pytest.txt     the CUDA tests on both paths (tests/test_cuda.py: targets cuda and cuda-persistent,
#                  and the emulated ones again)
#   memcheck.txt, racecheck.txt   compute-sanitizer over scripts/gpu_smoke.py (every cell, both paths,
#                  dense and packed, float32 and bfloat16, one small case each)
#   bench-*.txt / .json / .png    fusedrnn against cuDNN in one process: float32 with TF32 off and on,
#                  bfloat16; the documented models, and hidden 256 / 1024 at batch 1, 16, 64, T 100
#                  and 1000, dense and packed; each row with the path taken and the model's time
#   model.txt      the performance model's predictions (python -m fusedrnn.gpu_model)
# Usage: bash scripts/gpu_run.sh [--dry-run] [OUTDIR]    (--dry-run prints the plan and runs nothing)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
OUT="${1:-benchmarks/results/gpu-$COMMIT}"
PY="${PYTHON:-python3}"
export FUSEDRNN_SYSTEM_PYTHON=1 FUSEDRNN_CUDA=1 FUSEDRNN_EXPECT_CUDA=1  # the emulated backend is not built here (CI tests it)
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
SANITIZER="$CUDA_HOME/bin/compute-sanitizer"
[ -x "$SANITIZER" ] || SANITIZER="$(command -v compute-sanitizer || echo compute-sanitizer)"
GRID=(--grid --cells lstm,gru --batch 1,16,64 --hidden 256,1024 --input 256)

# name | seconds allowed | command (run with bash -c, output to OUT/name.txt)
STAGES=(
  "build|180|source scripts/setup.sh"
  "ptxas|30|$PY scripts/ptxas_report.py --out $OUT/ptxas-report.txt --cubin-dir build/cubins && $PY scripts/sass_check.py build/cubins"
  "pytest|80|$PY -m pytest tests/test_cuda.py -q -rs -p no:cacheprovider"
  "memcheck|60|$SANITIZER --tool memcheck --error-exitcode 1 $PY scripts/gpu_smoke.py"
  "racecheck|50|$SANITIZER --tool racecheck --error-exitcode 1 $PY scripts/gpu_smoke.py lstm gru"
  "bench-f32|80|$PY -m fusedrnn.bench --tf32 off --budget 1 ${GRID[*]} --seq-len 100,1000 --layout dense,packed --out $OUT --tag bench-f32"
  "bench-f32-tf32|25|$PY -m fusedrnn.bench --tf32 on --budget 1 --out $OUT --tag bench-f32-tf32"
  "bench-bf16|50|$PY -m fusedrnn.bench --dtype bfloat16 --budget 1 ${GRID[*]} --seq-len 100 --layout dense,packed --out $OUT --tag bench-bf16"
  "model|10|$PY -m fusedrnn.gpu_model --ptxas $OUT/ptxas-report.txt"
)

if [ "$DRY" = 1 ]; then
  echo "gpu_run.sh plan (commit $COMMIT), writing into $OUT/:"
  total=0
  for s in "${STAGES[@]}"; do
    IFS='|' read -r name secs cmd <<< "$s"
    total=$((total + secs))
    printf '  %-15s at most %4s s   %s\n' "$name" "$secs" "$cmd"
  done
  echo "  at most $total s in all, then summary.txt"
  exit 0
fi

mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
{
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
  $PY -c "import torch; print('torch:', torch.__version__, '| cuda:', torch.version.cuda, '| cudnn:', torch.backends.cudnn.version())"
  "$CUDA_HOME/bin/nvcc" --version | tail -1 | sed 's/^/nvcc: /'
  echo "cores: $(nproc)"
} > "$SUMMARY" 2>&1
for s in "${STAGES[@]}"; do
  IFS='|' read -r name secs cmd <<< "$s"
  start=$(date +%s)
  timeout "$secs" bash -c "$cmd" > "$OUT/$name.txt" 2>&1
  rc=$?
  status=$([ $rc = 0 ] && echo ok || { [ $rc = 124 ] && echo "TIMED OUT after $secs s" || echo "FAILED (rc $rc)"; })
  echo "stage $name: $status in $(( $(date +%s) - start )) s" | tee -a "$SUMMARY"
  if [ "$name" = build ] && [ $rc != 0 ]; then echo "the build failed: see $OUT/build.txt" | tee -a "$SUMMARY"; break; fi
done
{
  echo "pytest: $(tail -1 "$OUT/pytest.txt" 2>/dev/null)"
  echo "memcheck: $(grep -h 'ERROR SUMMARY' "$OUT/memcheck.txt" 2>/dev/null | tail -1)"
  echo "racecheck: $(grep -h 'RACECHECK SUMMARY\|ERROR SUMMARY' "$OUT/racecheck.txt" 2>/dev/null | tail -1)"
  echo "sass: $(grep -h '^sass_check' "$OUT/ptxas.txt" 2>/dev/null | tail -1)"
} >> "$SUMMARY"
echo "wrote $OUT/"
cat "$SUMMARY"
