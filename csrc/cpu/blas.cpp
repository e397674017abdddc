#include "blas.h"

#include <ATen/Parallel.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>

#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>

namespace fusedrnn {
namespace cpu_blas {
namespace {

template <typename T>
using FortranGemm = void (*)(const char*, const char*, const void*, const void*, const void*, const T*,
                             const T*, const void*, const T*, const void*, const T*, T*, const void*);

struct Blas {
  FortranGemm<float> sgemm = nullptr;
  FortranGemm<double> dgemm = nullptr;
  int (*set_local_threads)(int) = nullptr;  // MKL_Set_Num_Threads_Local
};

// Integer arguments are passed as pointers to int64 holding small values: read as LP64 (int32,
// little-endian) or as ILP64 (int64), they mean the same.
template <typename T>
void call(FortranGemm<T> f, bool transpose_w, int64_t m, int64_t n, int64_t k, const T* A, const T* W, T beta,
          T* C) {
  // Column-major view: C^T[n, m] = op(W)^T[n, k] @ A^T[k, m].
  const int64_t M = n, N = m, K = k, lda = transpose_w ? k : n, ldb = k, ldc = n;
  const char ta = transpose_w ? 'T' : 'N', tb = 'N';
  const T alpha = 1;
  f(&ta, &tb, &M, &N, &K, &alpha, W, &lda, A, &ldb, &beta, C, &ldc);
}

template <typename T>
bool self_test(FortranGemm<T> f) {
  // A [2,3], W [2,3] (transposed use) and W2 [3,2]: known products.
  const T A[6] = {1, 2, 3, 4, 5, 6};
  const T W[6] = {1, 0, -1, 2, 1, 0};
  T C[4] = {9, 9, 9, 9};
  call<T>(f, true, 2, 2, 3, A, W, T(0), C);
  const T expect_t[4] = {-2, 4, -2, 13};
  T C2[4] = {1, 1, 1, 1};
  call<T>(f, false, 2, 2, 3, A, W, T(1), C2);  // W as [3, 2]: {{1,0},{-1,2},{1,0}}
  const T expect_n[4] = {1 + 2, 1 + 4, 1 + 5, 1 + 10};
  for (int i = 0; i < 4; ++i) {
    if (C[i] != expect_t[i] || C2[i] != expect_n[i]) return false;
  }
  return true;
}

const Blas& blas() {
  static Blas b;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("FUSEDRNN_DIRECT_BLAS");
    if (env && std::string(env) == "0") return;  // forced fallback (tests, diagnosis)
    Dl_info info;
    if (!dladdr(reinterpret_cast<void*>(&at::get_num_threads), &info) || !info.dli_fname) return;
    void* lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (!lib) return;
    auto s = reinterpret_cast<FortranGemm<float>>(dlsym(lib, "sgemm_"));
    auto d = reinterpret_cast<FortranGemm<double>>(dlsym(lib, "dgemm_"));
    if (s && self_test<float>(s)) b.sgemm = s;
    if (d && self_test<double>(d)) b.dgemm = d;
    b.set_local_threads = reinterpret_cast<int (*)(int)>(dlsym(lib, "MKL_Set_Num_Threads_Local"));
  });
  return b;
}

template <typename T>
void fallback(int64_t m, int64_t n, int64_t k, const T* A, const T* W, bool transpose_w, T beta, T* C) {
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  const at::Tensor a = at::from_blob(const_cast<T*>(A), {m, k}, opts);
  const at::Tensor w = transpose_w ? at::from_blob(const_cast<T*>(W), {n, k}, opts).t()
                                   : at::from_blob(const_cast<T*>(W), {k, n}, opts);
  at::Tensor c = at::from_blob(C, {m, n}, opts);
  if (beta == T(0)) {
    at::mm_out(c, a, w);
  } else {
    c.addmm_(a, w);
  }
}

}  // namespace

template <>
void gemm<float>(int64_t m, int64_t n, int64_t k, const float* A, const float* W, bool transpose_w, float beta,
                 float* C) {
  if (m == 0 || n == 0) return;
  if (auto f = blas().sgemm) return call<float>(f, transpose_w, m, n, k, A, W, beta, C);
  fallback<float>(m, n, k, A, W, transpose_w, beta, C);
}

template <>
void gemm<double>(int64_t m, int64_t n, int64_t k, const double* A, const double* W, bool transpose_w,
                  double beta, double* C) {
  if (m == 0 || n == 0) return;
  if (auto f = blas().dgemm) return call<double>(f, transpose_w, m, n, k, A, W, beta, C);
  fallback<double>(m, n, k, A, W, transpose_w, beta, C);
}

SingleThreadedBlas::SingleThreadedBlas() : previous_(0) {
  if (auto f = blas().set_local_threads) previous_ = f(1);
}

SingleThreadedBlas::~SingleThreadedBlas() {
  if (auto f = blas().set_local_threads) f(previous_);
}

bool has_direct_blas() { return blas().sgemm && blas().dgemm; }

}  // namespace cpu_blas
}  // namespace fusedrnn
