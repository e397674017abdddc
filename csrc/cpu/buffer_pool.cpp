#include "buffer_pool.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace fusedrnn {
namespace cpu_pool {
namespace {

constexpr size_t kAlignment = 64;  // as c10's CPU allocator: whole cache lines, AVX2 loads aligned

// Requests are rounded up to a size class, an eighth of the power of two below them (at most 12.5%
// more), so that a batch a little longer than the last one still finds its blocks. A block up to a
// quarter larger than the class asked for is handed out too.
size_t size_class(size_t n) {
  const int log2 = 63 - __builtin_clzll(static_cast<unsigned long long>(n));
  const size_t step = size_t(1) << std::max(log2 - 3, 12);
  return (n + step - 1) / step * step;
}

int64_t limit_from_env() {
  const char* env = std::getenv("FUSEDRNN_CPU_CACHE_MB");
  if (env == nullptr || *env == '\0') return int64_t(1024) << 20;
  char* end = nullptr;
  errno = 0;
  const long long mb = std::strtoll(env, &end, 10);
  TORCH_CHECK(*end == '\0' && errno == 0 && mb >= 0 && mb <= (int64_t(1) << 30),
              "fusedrnn: FUSEDRNN_CPU_CACHE_MB must be a whole number of megabytes >= 0 (0 turns the CPU "
              "buffer cache off), got '", env, "'");
  return static_cast<int64_t>(mb) << 20;
}

struct Block {
  void* ptr;
  size_t size;
};

class Pool final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n < kMinBytes || limit() == 0) return c10::GetCPUAllocator()->allocate(n);
    const size_t size = size_class(n);
    Block* block = take(size);
    if (block == nullptr) {
      void* ptr = nullptr;
      if (posix_memalign(&ptr, kAlignment, size) != 0) ptr = nullptr;
      if (ptr == nullptr) {
        release();  // the idle blocks may be what is missing
        if (posix_memalign(&ptr, kAlignment, size) != 0) ptr = nullptr;
      }
      // torch.OutOfMemoryError in Python (a RuntimeError, as torch's own CPU allocator raises; the
      // CUDA caching allocator raises this type too), so that OOM handlers catch it.
      TORCH_CHECK_WITH(OutOfMemoryError, ptr != nullptr, "fusedrnn: out of memory allocating a CPU buffer of ", size,
                       " bytes");
      block = new Block{ptr, size};
    }
    return {block->ptr, block, &Pool::give_back, c10::Device(c10::kCPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  Stats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {cached_bytes_, static_cast<int64_t>(idle_.size()), limit_locked(), hits_, misses_};
  }

  void release() {
    std::vector<Block*> freed;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      freed.swap(idle_);
      cached_bytes_ = 0;
    }
    for (Block* b : freed) destroy(b);
  }

  static Pool& instance() {
    static Pool* pool = [] {
      Pool* p = new Pool();  // never destroyed: tensors may outlive static destructors
      // A fork (a DataLoader worker) while another thread holds the lock would leave the child's
      // copy locked for good: the forking thread takes it around the fork.
      pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                     [] { instance().mutex_.unlock(); });
      return p;
    }();
    return *pool;
  }

 private:
  int64_t limit() {
    std::lock_guard<std::mutex> lock(mutex_);
    return limit_locked();
  }
  int64_t limit_locked() {
    if (limit_ < 0) limit_ = limit_from_env();
    return limit_;
  }

  // The smallest idle block of at least `size` bytes and at most a quarter more, or nullptr.
  Block* take(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t best = idle_.size();
    for (size_t i = 0; i < idle_.size(); ++i) {
      const size_t s = idle_[i]->size;
      if (s >= size && s <= size + size / 4 && (best == idle_.size() || s < idle_[best]->size)) best = i;
    }
    if (best == idle_.size()) {
      ++misses_;
      return nullptr;
    }
    ++hits_;
    Block* b = idle_[best];
    idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(best));
    cached_bytes_ -= static_cast<int64_t>(b->size);
    return b;
  }

  // A block whose tensor died: kept, most recent last, and the oldest freed beyond the limit.
  void put(Block* block) {
    std::vector<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const int64_t limit = limit_locked();
      idle_.push_back(block);
      cached_bytes_ += static_cast<int64_t>(block->size);
      size_t drop = 0;
      while (cached_bytes_ > limit && drop < idle_.size()) {
        cached_bytes_ -= static_cast<int64_t>(idle_[drop]->size);
        evicted.push_back(idle_[drop++]);
      }
      idle_.erase(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(drop));
    }
    for (Block* b : evicted) destroy(b);
  }

  static void give_back(void* ctx) { instance().put(static_cast<Block*>(ctx)); }

  static void destroy(Block* b) {
    std::free(b->ptr);
    delete b;
  }

  std::mutex mutex_;
  std::vector<Block*> idle_;
  int64_t cached_bytes_ = 0;
  int64_t limit_ = -1;  // read from the environment on first use
  int64_t hits_ = 0, misses_ = 0;
};

}  // namespace

at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  TORCH_CHECK(options.device().is_cpu(), "fusedrnn: internal error: CPU buffer asked for on ", options.device());
  return at::detail::empty_generic(sizes, &Pool::instance(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   c10::typeMetaToScalarType(options.dtype()), c10::nullopt);
}

Stats stats() { return Pool::instance().stats(); }

void release() { Pool::instance().release(); }

}  // namespace cpu_pool
}  // namespace fusedrnn
