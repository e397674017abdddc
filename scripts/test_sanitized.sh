#!/usr/bin/env bash
# The emulated CUDA kernels under AddressSanitizer and UBSan: an out-of-bounds access or undefined
# behaviour in a kernel is reported with the kernel's source line. Sets up and builds as
# scripts/test.sh does, then builds fusedrnn._emu sanitized (FUSEDRNN_EMU_SANITIZE=1) in a copy of
# the tree (build/sanitized/) beside that fusedrnn._C, and runs the emulated CUDA tests there with
# the sanitizer runtimes preloaded. Extra arguments go to pytest.
set -euo pipefail
export FUSEDRNN_EMU=1 FUSEDRNN_EXPECT_EMU=1
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
COPY="$ROOT/build/sanitized"
rm -rf "$COPY" && mkdir -p "$COPY"
git ls-files --cached --others --exclude-standard -z | xargs -0 cp --parents -t "$COPY"
cp fusedrnn/_C*.so "$COPY/fusedrnn/"
echo "== building fusedrnn._emu with ASan and UBSan in $COPY"
(cd "$COPY" && FUSEDRNN_EMU_SANITIZE=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" setup.py -q build_ext --inplace \
  > build.log 2>&1) || { tail -40 "$COPY/build.log" >&2; exit 1; }
cd "$COPY"
LD_PRELOAD="$(${CXX:-g++} -print-file-name=libasan.so):$(${CXX:-g++} -print-file-name=libubsan.so)" \
  ASAN_OPTIONS=detect_leaks=0:alloc_dealloc_mismatch=0 UBSAN_OPTIONS=print_stacktrace=1 \
  "$PY" -m pytest -p no:cacheprovider tests/test_cuda.py tests/test_emu_modules.py -k "emu" "$@"
