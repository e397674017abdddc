// fusedrnn._emu: the emulated CUDA backend as an extension module of its own. Its library
// fusedrnn_emu declares the layer ops with fusedrnn's schemas and autograd; csrc/emu/layer_kernel.cpp
// implements them with the CUDA kernels run by the emulation layer. The module's functions set
// the emulator up (fusedrnn/emulation.py wraps them).
#include <Python.h>
#include <torch/library.h>

#include <exception>

#include "../autograd.h"
#include "../schemas.h"
#include "emu.h"

namespace {

namespace emu = fusedrnn::emu;

struct EmuOps {
  static constexpr const char* kForward = "fusedrnn_emu::layer_forward";
  static constexpr const char* kBackward = "fusedrnn_emu::layer_backward";
};

PyObject* set_schedule_seed(PyObject*, PyObject* arg) {
  const unsigned long long seed = PyLong_AsUnsignedLongLong(arg);
  if (PyErr_Occurred()) return nullptr;
  emu::set_schedule_seed(seed);
  Py_RETURN_NONE;
}
PyObject* schedule_seed(PyObject*, PyObject*) { return PyLong_FromUnsignedLongLong(emu::schedule_seed()); }
PyObject* set_sm_count(PyObject*, PyObject* arg) {
  const long n = PyLong_AsLong(arg);
  if (PyErr_Occurred()) return nullptr;
  if (n < 0) {
    PyErr_SetString(PyExc_ValueError, "fusedrnn emu: the SM count must be positive (0: the default)");
    return nullptr;
  }
  emu::set_sm_count(static_cast<int>(n));
  Py_RETURN_NONE;
}
PyObject* set_workers(PyObject*, PyObject* arg) {
  const long n = PyLong_AsLong(arg);
  if (PyErr_Occurred()) return nullptr;
  emu::set_workers(static_cast<int>(n));
  Py_RETURN_NONE;
}
PyObject* set_timeout(PyObject*, PyObject* arg) {
  const double s = PyFloat_AsDouble(arg);
  if (PyErr_Occurred()) return nullptr;
  emu::set_timeout(s);
  Py_RETURN_NONE;
}
PyObject* device_props(PyObject*, PyObject*) {
  const emu::DeviceProps p = emu::device_props();
  return Py_BuildValue("{s:i,s:i,s:i,s:i,s:n,s:n}", "sm_count", p.sm_count, "max_threads_per_block",
                       p.max_threads_per_block, "max_threads_per_sm", p.max_threads_per_sm, "max_blocks_per_sm",
                       p.max_blocks_per_sm, "smem_per_block_optin", static_cast<Py_ssize_t>(p.smem_per_block_optin),
                       "smem_per_sm", static_cast<Py_ssize_t>(p.smem_per_sm));
}
PyObject* stats(PyObject*, PyObject*) {
  const emu::Stats s = emu::stats();
  return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}", "launches", s.launches, "cooperative_launches",
                       s.cooperative_launches, "blocks", s.blocks, "threads", s.threads, "block_barriers",
                       s.block_barriers, "warp_collectives", s.warp_collectives, "grid_barriers", s.grid_barriers,
                       "cooperative_smem_bytes", s.cooperative_smem_bytes, "last_cooperative_smem",
                       s.last_cooperative_smem);
}

PyMethodDef methods[] = {
    {"set_schedule_seed", set_schedule_seed, METH_O,
     "Thread order at every barrier: 0 in thread order, else shuffled from this seed (also FUSEDRNN_EMU_SEED)."},
    {"schedule_seed", schedule_seed, METH_NOARGS, "The seed of the thread order (0: thread order)."},
    {"set_sm_count", set_sm_count, METH_O,
     "The emulated device's SM count (0: the default, 132, or FUSEDRNN_EMU_SMS); bounds cooperative launches and "
     "what the occupancy query reports."},
    {"set_workers", set_workers, METH_O, "OS threads that run the blocks of a non-cooperative launch."},
    {"set_timeout", set_timeout, METH_O, "Seconds after which a launch still running is aborted with an error."},
    {"device_props", device_props, METH_NOARGS, "The emulated device's limits."},
    {"stats", stats, METH_NOARGS, "Counters since the module was loaded: launches, blocks, threads, barriers."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" PyMODINIT_FUNC PyInit__emu(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_emu", nullptr, -1, methods};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(fusedrnn_emu, m) { fusedrnn::define_layer_ops(m); }

TORCH_LIBRARY_IMPL(fusedrnn_emu, Autograd, m) {
  m.impl("layer_forward", &fusedrnn::autograd::layer_forward_autograd<EmuOps>);
}
