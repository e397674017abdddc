"""Registers, shared memory, spills and stack frame of every fusedrnn CUDA kernel, from ptxas.

Compiles the device code of csrc/cuda/*.cu for each architecture of TORCH_CUDA_ARCH_LIST (default
9.0) with the flags the extension build uses, plus -Xptxas -v, and prints one row per kernel. Exits
1 when a kernel spills or has a stack frame (local memory), 2 when nvcc fails. Runs on a machine
with nvcc and a CUDA build of torch; no GPU needed (CI's stage 2 runs it).

    python scripts/ptxas_report.py [--out FILE] [--cubin-dir DIR]
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import torch
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def include_dirs():
    try:
        dirs = cpp_extension.include_paths(device_type="cuda")
    except TypeError:  # torch < 2.6
        dirs = cpp_extension.include_paths(cuda=True)
    nvidia = os.path.join(os.path.dirname(os.path.dirname(torch.__file__)), "nvidia")
    return dirs + sorted(glob.glob(os.path.join(nvidia, "*", "include")))


def cxx_standard():
    """The C++ standard torch's extension build passes to nvcc (C++20 since torch 2.10 or so)."""
    with open(cpp_extension.__file__) as f:
        return "-std=c++20" if "-std=c++20" in f.read() else "-std=c++17"


def archs():
    spec = os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0")
    return sorted({a.replace("+PTX", "").replace(".", "") for a in re.split(r"[;\s]+", spec) if a})


def demangle(names):
    if not names or shutil.which("c++filt") is None:
        return {n: n for n in names}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def parse(log):
    """ptxas -v output -> {(mangled kernel, arch): {registers, smem, stack, spill_stores, spill_loads}}."""
    kernels, current = {}, None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for '(sm_\d+a?)'", line)
        if m:
            current = (m.group(1), m.group(2))
            kernels[current] = dict(registers=0, smem=0, stack=0, spill_stores=0, spill_loads=0)
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            kernels[current].update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            kernels[current]["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            kernels[current]["smem"] = int(s.group(1)) if s else 0
    return kernels


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--cubin-dir", help="keep the compiled cubins here (for cuobjdump)")
    args = parser.parse_args()
    cuda_home = cpp_extension.CUDA_HOME or os.environ.get("CUDA_HOME", "/usr/local/cuda")
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    if not os.path.exists(nvcc):
        sys.exit(f"ptxas_report: no nvcc at {nvcc} (set CUDA_HOME)")
    cubin_dir = args.cubin_dir or tempfile.mkdtemp(prefix="fusedrnn-cubin-")
    os.makedirs(cubin_dir, exist_ok=True)
    flags = [cxx_standard(), "-O3", "-Xptxas", "-v", "--expt-relaxed-constexpr", "-DFUSEDRNN_WITH_CUDA=1",
             "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
             "-D__CUDA_NO_HALF2_OPERATORS__", f"-D_GLIBCXX_USE_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}"]
    flags += [f"-I{d}" for d in include_dirs()]
    kernels = {}
    for source in sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu"))):
        for arch in archs():
            cubin = os.path.join(cubin_dir, f"{os.path.splitext(os.path.basename(source))[0]}.sm_{arch}.cubin")
            cmd = [nvcc, "-cubin", f"-arch=sm_{arch}", *flags, source, "-o", cubin]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(" ".join(cmd), file=sys.stderr)
                print(r.stdout + r.stderr, file=sys.stderr)
                sys.exit(2)
            kernels.update(parse(r.stdout + r.stderr))
    names = demangle(sorted({k for k, _ in kernels}))
    rows = [("kernel", "arch", "registers", "smem", "stack", "spill stores", "spill loads")]
    bad = []
    for (mangled, arch), k in sorted(kernels.items(), key=lambda kv: (names[kv[0][0]], kv[0][1])):
        name = re.sub(r"^void |fusedrnn::|\(anonymous namespace\)::", "", names[mangled]).split("(")[0]
        rows.append((name, arch, k["registers"], k["smem"], k["stack"], k["spill_stores"], k["spill_loads"]))
        if k["stack"] or k["spill_stores"] or k["spill_loads"]:
            bad.append(name)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    header = (f"ptxas -v of fusedrnn's CUDA kernels (torch {torch.__version__}, CUDA {torch.version.cuda}, "
              f"{len(kernels)} kernel builds; smem in bytes, static only)\n")
    print(header + table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(header + table + "\n")
    if not kernels:
        sys.exit("ptxas_report: ptxas reported no kernels")
    if bad:
        sys.exit(f"ptxas_report: {len(bad)} kernel builds spill or use a stack frame: {', '.join(sorted(set(bad)))}")


if __name__ == "__main__":
    main()
