// Schemas of fusedrnn's ops, declared once for every backend. Implementations are registered
// per backend in csrc/cpu/ and csrc/cuda/ (TORCH_LIBRARY_IMPL; concat_directions's below), the
// autograd formulas in csrc/autograd.cpp, the fake (meta) kernels from Python (fusedrnn/_ops.py).
#include <Python.h>
#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

#include "cpu/blas.h"
#include "cpu/buffer_pool.h"
#include "cpu/loop_stats.h"
#include "cpu/packed_gemm.h"
#include "schemas.h"

namespace {
// Runs f, a C++ exception (a failed TORCH_CHECK, a bad environment variable) becoming a Python
// RuntimeError with its message.
template <class F>
PyObject* raising(const F& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}
PyObject* direct_blas(PyObject*, PyObject*) {
  return PyBool_FromLong(fusedrnn::cpu_blas::has_direct_blas());
}
PyObject* packed_gemm(PyObject*, PyObject*) { return PyBool_FromLong(fusedrnn::cpu_packed::available()); }
PyObject* packed_isa(PyObject*, PyObject*) {  // raises on a bad FUSEDRNN_PACKED_ISA
  return raising([] { return PyUnicode_FromString(fusedrnn::cpu_packed::isa()); });
}
PyObject* cache_info(PyObject*, PyObject*) {
  fusedrnn::cpu_pool::Stats st{};
  try {
    st = fusedrnn::cpu_pool::stats();
  } catch (const std::exception& e) {  // a bad FUSEDRNN_CPU_CACHE_MB
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L}", "cached_bytes", static_cast<long long>(st.cached_bytes),
                       "cached_blocks", static_cast<long long>(st.cached_blocks), "limit_bytes",
                       static_cast<long long>(st.limit_bytes), "hits", static_cast<long long>(st.hits), "misses",
                       static_cast<long long>(st.misses));
}
PyObject* loop_stats(PyObject*, PyObject*) {
  const fusedrnn::cpu_loop::Stats st = fusedrnn::cpu_loop::stats();
  return Py_BuildValue("{s:L,s:L,s:L,s:L}", "unit_split_forward", static_cast<long long>(st.unit_split_forward),
                       "unit_split_backward", static_cast<long long>(st.unit_split_backward),
                       "unit_split_step_proj", static_cast<long long>(st.unit_split_step_proj),
                       "column_split_products", static_cast<long long>(st.column_split_products));
}
PyObject* fma_peak_gflops(PyObject*, PyObject* args) {
  long long iters = 0;
  if (!PyArg_ParseTuple(args, "L", &iters)) return nullptr;
  return raising([&] { return PyFloat_FromDouble(fusedrnn::cpu_packed::fma_peak_gflops(iters)); });
}
PyObject* gemm_gflops(PyObject*, PyObject* args) {
  long long m = 0, n = 0, k = 0, repeats = 0;
  if (!PyArg_ParseTuple(args, "LLLL", &m, &n, &k, &repeats)) return nullptr;
  return raising([&] { return PyFloat_FromDouble(fusedrnn::cpu_packed::gemm_gflops(m, n, k, repeats)); });
}
PyObject* empty_cache(PyObject*, PyObject*) {
  fusedrnn::cpu_pool::release();
  Py_RETURN_NONE;
}
PyMethodDef methods[] = {
    {"packed_gemm", packed_gemm, METH_NOARGS,
     "Whether fusedrnn's packed-weight float32 kernel is built in and not turned off (FUSEDRNN_PACKED_GEMM=0); "
     "layer calls of 256 rows or more use it for their input projection, single-threaded step products, "
     "input gradient and weight gradients."},
    {"packed_isa", packed_isa, METH_NOARGS,
     "The packed kernels' instruction set: avx512 where the CPU has it (FUSEDRNN_PACKED_ISA=avx2 keeps to "
     "AVX2), avx2, or none."},
    {"cache_info", cache_info, METH_NOARGS,
     "The CPU buffer cache: dict of cached_bytes, cached_blocks (idle blocks held), limit_bytes, "
     "hits and misses (requests of 256 KB or more served by an idle block / by a new one)."},
    {"empty_cache", empty_cache, METH_NOARGS, "Frees the idle blocks of the CPU buffer cache."},
    {"fma_peak_gflops", fma_peak_gflops, METH_VARARGS,
     "fma_peak_gflops(iters): GFLOP/s of 12 independent FMA chains on registers with the packed kernels' "
     "ISA, on the calling thread: the peak the step products are measured against."},
    {"gemm_gflops", gemm_gflops, METH_VARARGS,
     "gemm_gflops(m, n, k, repeats): GFLOP/s of the packed step product C[m, n] = A[m, k] @ W[n, k]^T, "
     "W packed once, on the calling thread."},
    {"loop_stats", loop_stats, METH_NOARGS,
     "How the CPU layer ops ran their step loops since loading: dict of unit_split_forward and "
     "unit_split_backward (loops run with the hidden units split between threads) and "
     "unit_split_step_proj (those forward loops that projected each step's input themselves), and "
     "column_split_products (input projections of few rows split between threads by W's rows)."},
    {"direct_blas", direct_blas, METH_NOARGS,
     "Whether the CPU step loop calls the BLAS in libtorch_cpu directly (else through at::mm)."},
    {nullptr, nullptr, 0, nullptr}};
}  // namespace

// Importing fusedrnn._C loads this library, which runs the registrations below.
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(fusedrnn, m) {
  fusedrnn::define_layer_ops(m);
  // The two directions' outputs of a bidirectional layer side by side, [forward | reverse] along
  // the last dimension (torch.cat(..., -1)); on the CPU into a buffer of fusedrnn's cache.
  m.def("concat_directions(Tensor forward, Tensor reverse) -> Tensor");
  // For tests: the CPU's packed-weight step product on its own, a @ w^T (transpose_w) or a @ w,
  // plus c when given. float32; raises where the kernel is not available.
  m.def("_packed_step_gemm(Tensor a, Tensor w, bool transpose_w, Tensor? c) -> Tensor");
  // For tests: the CPU's packed weight-gradient product on its own, g^T [a1 | a2 | 1] (the ones
  // column when ones), the rows cut into segments of the given sizes. float32.
  m.def("_packed_weight_grad(Tensor g, Tensor a1, Tensor? a2, bool ones, int[] segment_rows) -> Tensor");
}

namespace {
void check_concat_args(const at::Tensor& forward, const at::Tensor& reverse) {
  TORCH_CHECK(forward.dim() >= 1 && forward.dim() == reverse.dim(),
              "fusedrnn: concat_directions expects two tensors of the same number (>= 1) of dimensions, got ",
              forward.dim(), " and ", reverse.dim());
  // sym_sizes: under torch.compile / torch.export this kernel also runs on meta tensors with
  // symbolic sizes (CompositeExplicitAutograd covers Meta), and sizes() would specialize them.
  TORCH_CHECK(forward.sym_sizes().slice(0, forward.dim() - 1) == reverse.sym_sizes().slice(0, reverse.dim() - 1),
              "fusedrnn: concat_directions expects the same sizes but in the last dimension, got ",
              forward.sym_sizes(), " and ", reverse.sym_sizes());
  TORCH_CHECK(forward.scalar_type() == reverse.scalar_type() && forward.device() == reverse.device(),
              "fusedrnn: concat_directions expects one dtype and device, got ", forward.scalar_type(), " on ",
              forward.device(), " and ", reverse.scalar_type(), " on ", reverse.device());
}

at::Tensor concat_directions_cpu(const at::Tensor& forward, const at::Tensor& reverse) {
  check_concat_args(forward, reverse);
  const int64_t last = forward.dim() - 1, h1 = forward.size(last), h2 = reverse.size(last);
  std::vector<int64_t> sizes = forward.sizes().vec();
  sizes[last] = h1 + h2;
  at::Tensor out = fusedrnn::cpu_pool::empty(sizes, forward.options());
  out.narrow(last, 0, h1).copy_(forward);
  out.narrow(last, h1, h2).copy_(reverse);
  return out;
}

at::Tensor concat_directions_any(const at::Tensor& forward, const at::Tensor& reverse) {
  check_concat_args(forward, reverse);
  return at::cat({forward, reverse}, -1);
}
}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) { m.impl("concat_directions", &concat_directions_cpu); }
// Not CompositeExplicitAutograd: that would also serve the Meta key, and FakeTensor (torch.compile,
// torch.export) would run it instead of the fake kernel in fusedrnn/_ops.py and specialize the sizes.
TORCH_LIBRARY_IMPL(fusedrnn, CUDA, m) { m.impl("concat_directions", &concat_directions_any); }
