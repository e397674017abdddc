"""Checks the SASS of the persistent kernels with cuobjdump: the half and bfloat16 kernels must hold
tensor-core instructions (HMMA), and the float32 ones none (their products are FFMA, never TF32).

    python scripts/sass_check.py CUBIN_DIR     (cubins from scripts/ptxas_report.py --cubin-dir)

Prints the HMMA and FFMA count of each persistent kernel; exits 1 when a check fails, 2 when there is
no cuobjdump or no cubin. cuobjdump is looked for in CUDA_HOME/bin, on PATH, then in the triton
package that CUDA builds of torch bring along.
"""
import glob
import os
import re
import shutil
import subprocess
import sys


def find_cuobjdump():
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    for c in [os.path.join(cuda_home, "bin", "cuobjdump"), shutil.which("cuobjdump")]:
        if c and os.path.exists(c):
            return c
    try:
        import triton
        c = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        if os.path.exists(c):
            return c
    except ImportError:
        pass
    return None


def counts(sass):
    """{mangled function: {'HMMA': n, 'FFMA': n}} of a cuobjdump -sass listing."""
    out, current = {}, None
    for line in sass.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            current = out.setdefault(m.group(1), {"HMMA": 0, "FFMA": 0})
        elif current is not None:
            for op in current:
                if re.search(rf"\b{op}\b", line):
                    current[op] += 1
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    tool = find_cuobjdump()
    if tool is None:
        print("sass_check: no cuobjdump (CUDA_HOME/bin, PATH, triton)", file=sys.stderr)
        sys.exit(2)
    cubins = sorted(glob.glob(os.path.join(sys.argv[1], "*.cubin")))
    if not cubins:
        print(f"sass_check: no cubin in {sys.argv[1]}", file=sys.stderr)
        sys.exit(2)
    kinds = {"IN3c108BFloat16EfE": "bfloat16", "IN3c104HalfEfE": "float16", "IffE": "float32"}
    failures, seen = [], set()
    for cubin in cubins:
        sass = subprocess.run([tool, "-sass", cubin], capture_output=True, text=True, check=True).stdout
        for name, c in sorted(counts(sass).items()):
            m = re.search(r"persistent(\d+)(forward|backward)_kernel(IN3c108BFloat16EfE|IN3c104HalfEfE|IffE)", name)
            if not m:
                continue
            dtype, which = kinds[m.group(3)], m.group(2)
            seen.add((which, dtype))
            print(f"{os.path.basename(cubin)}  persistent {which:<8} {dtype:<8}  HMMA {c['HMMA']:>4}  FFMA {c['FFMA']:>5}")
            if dtype == "float32" and c["HMMA"]:
                failures.append(f"{which} float32 holds HMMA (its products are to be FFMA)")
            if dtype != "float32" and not c["HMMA"]:
                failures.append(f"{which} {dtype} holds no HMMA")
    missing = {(w, d) for w in ("forward", "backward") for d in kinds.values()} - seen
    failures += [f"no persistent {w} kernel for {d} in the cubins" for w, d in sorted(missing)]
    if failures:
        print("sass_check: FAILED: " + "; ".join(failures))
        sys.exit(1)
    print(f"sass_check: ok: HMMA in all {2 * 2} half / bfloat16 persistent kernels, none in the float32 ones")


if __name__ == "__main__":
    main()
