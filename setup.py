"""Build fusedrnn: a C++ (CPU) extension always, plus CUDA sources when torch is a CUDA build.

Install against the torch that is already installed:  pip install --no-build-isolation .
Environment:
  FUSEDRNN_CUDA=0|1            force the CUDA sources off / on (default: on when torch has CUDA
                               and nvcc is found through CUDA_HOME)
  TORCH_CUDA_ARCH_LIST         GPU architectures (default here: "8.0;9.0+PTX")
  FUSEDRNN_CPU_CAPABILITY      avx2 | default: SIMD level of the CPU kernels (default: avx2 when the
                               building machine has AVX2 and FMA, as a source build runs where it is built)
  FUSEDRNN_EMU=1               also build fusedrnn._emu: the CUDA kernels compiled for the CPU over the
                               emulation layer (csrc/emu/), for testing them without a GPU (the test
                               command sets it; a user's install does not need it)
  FUSEDRNN_EMU_SANITIZE=1      build only fusedrnn._emu, with AddressSanitizer and UBSan: a test tool
                               (scripts/test_sanitized.sh builds it in a copy of the tree, beside the
                               fusedrnn._C already built, and runs it with the sanitizers preloaded)
  MAX_JOBS                     parallel compile jobs (ninja)
"""
import glob
import os
import platform
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # pragma: no cover - exercised only without torch
    sys.exit(
        "fusedrnn builds against an installed PyTorch, and none was found.\n"
        "Install torch first (for example `pip install torch`), then build fusedrnn with\n"
        "`pip install --no-build-isolation .` so that the build uses that torch."
    )

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_has_avx2():
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx2" in flags and "fma" in flags


def want_cuda():
    forced = os.environ.get("FUSEDRNN_CUDA")
    if forced is not None and forced not in ("0", "1"):
        sys.exit(f"FUSEDRNN_CUDA must be 0 or 1, got {forced!r}")
    if forced == "0":
        return False
    available = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if forced == "1" and not available:
        sys.exit(
            "FUSEDRNN_CUDA=1 but CUDA cannot be built: "
            f"torch.version.cuda={torch.version.cuda}, CUDA_HOME={cpp_extension.CUDA_HOME}. "
            "Install a CUDA build of torch and set CUDA_HOME to the toolkit (e.g. /usr/local/cuda)."
        )
    return available


def flag(name):
    value = os.environ.get(name, "0")
    if value not in ("0", "1"):
        sys.exit(f"{name} must be 0 or 1, got {value!r}")
    return value == "1"


def emulated_cuda_extension(sanitize=False):
    """fusedrnn._emu: csrc/cuda's kernels and CUDA backend compiled by the host compiler over the
    emulation layer, registering the fusedrnn_emu ops for CPU tensors."""
    cxx = ["-O2", "-fvisibility=hidden", "-pthread"]
    link = ["-pthread"]
    if sanitize:
        checks = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
        cxx, link = ["-O1", "-g", "-fvisibility=hidden", "-pthread"] + checks, link + checks
    return cpp_extension.CppExtension("fusedrnn._emu", sorted(glob.glob("csrc/emu/*.cpp")),
                                      extra_compile_args=cxx, extra_link_args=link)


def find_cublas(nvidia):
    """The folder and file name of the cuBLAS the CUDA backend links (its step products call
    cublasGemmEx): FUSEDRNN_CUBLAS_DIR, else the CUDA wheels' site-packages/nvidia/*/lib, else
    CUDA_HOME/lib64. At run time the loader finds it by its soname, already loaded by torch."""
    cuda_home = cpp_extension.CUDA_HOME or os.environ.get("CUDA_HOME", "/usr/local/cuda")
    dirs = ([os.environ["FUSEDRNN_CUBLAS_DIR"]] if os.environ.get("FUSEDRNN_CUBLAS_DIR") else
            sorted(glob.glob(os.path.join(nvidia, "*", "lib"))) + [os.path.join(cuda_home, d) for d in ("lib64", "lib")])
    for d in dirs:
        names = sorted(os.path.basename(f) for f in glob.glob(os.path.join(d, "libcublas.so*")))
        if names:
            return d, "libcublas.so" if "libcublas.so" in names else names[0]
    sys.exit("fusedrnn: no libcublas.so* in " + ", ".join(dirs) + " (set FUSEDRNN_CUBLAS_DIR to its folder)")


def extensions():
    if flag("FUSEDRNN_EMU_SANITIZE"):
        return [emulated_cuda_extension(sanitize=True)]
    return main_extension() + ([emulated_cuda_extension()] if flag("FUSEDRNN_EMU") else [])


def main_extension():
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cxx = ["-O3", "-fopenmp", "-fvisibility=hidden"]  # torch adds the C++ standard it needs
    capability = os.environ.get("FUSEDRNN_CPU_CAPABILITY", "avx2" if cpu_has_avx2() else "default")
    if capability == "avx2":
        # Selects ATen's AVX2 Vectorized<> (SLEEF exp/tanh, exported by libtorch_cpu).
        cxx += ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    elif capability != "default":
        sys.exit(f"FUSEDRNN_CPU_CAPABILITY must be avx2 or default, got {capability!r}")
    macros = [("FUSEDRNN_CPU_CAPABILITY", f'"{capability}"')]
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
    if want_cuda() and cuda_sources:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        # The CUDA torch wheels ship cuBLAS & co. headers in site-packages/nvidia/*/include.
        nvidia = os.path.join(os.path.dirname(os.path.dirname(torch.__file__)), "nvidia")
        include_dirs = sorted(glob.glob(os.path.join(nvidia, "*", "include")))
        cublas_dir, cublas_lib = find_cublas(nvidia)
        return [
            cpp_extension.CUDAExtension(
                "fusedrnn._C",
                sources + cuda_sources,
                include_dirs=include_dirs,
                library_dirs=[cublas_dir],
                define_macros=macros + [("FUSEDRNN_WITH_CUDA", "1")],
                extra_compile_args={"cxx": cxx, "nvcc": ["-O3"]},
                extra_link_args=[f"-l:{cublas_lib}"],
            )
        ]
    return [cpp_extension.CppExtension("fusedrnn._C", sources, define_macros=macros, extra_compile_args=cxx)]


setup(
    name="fusedrnn",
    version="0.1.0",
    description="Fused CPU and CUDA kernels for RNN, LSTM and GRU, drop-in for torch.nn",
    packages=find_packages(include=["fusedrnn", "fusedrnn.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.9",
    install_requires=["torch>=2.4"],
    extras_require={"test": ["pytest", "pytest-benchmark", "hypothesis", "onnx", "onnxscript", "onnxruntime"],
                    "bench": ["matplotlib", "tqdm"], "onnx": ["onnx", "onnxscript", "onnxruntime"]},
    entry_points={"console_scripts": ["fusedrnn=fusedrnn.__main__:main"]},
    zip_safe=False,
)
