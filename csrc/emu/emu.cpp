// The emulation layer's runtime: fibers, the per-block scheduler, launches and the checks (emu.h).
#include "emu.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <mutex>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define FUSEDRNN_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUSEDRNN_EMU_ASAN 1
#endif
#endif
#ifdef FUSEDRNN_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__) && !defined(FUSEDRNN_EMU_UCONTEXT)
#define FUSEDRNN_EMU_UCONTEXT 1
#endif
#ifdef FUSEDRNN_EMU_UCONTEXT
#include <ucontext.h>
#endif

thread_local uint3 threadIdx = {0, 0, 0};
thread_local uint3 blockIdx = {0, 0, 0};
thread_local dim3 blockDim = dim3(1, 1, 1);
thread_local dim3 gridDim = dim3(1, 1, 1);

#ifndef FUSEDRNN_EMU_UCONTEXT
// fusedrnn_emu_switch(save, to): saves the callee-saved registers, the SSE and x87 control words and
// the stack pointer into *save, then restores the same from the stack `to` points at (System V x86-64).
extern "C" void fusedrnn_emu_switch(void** save, void* to);
asm(R"(
.text
.p2align 4
.globl fusedrnn_emu_switch
.hidden fusedrnn_emu_switch
.type fusedrnn_emu_switch,@function
fusedrnn_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size fusedrnn_emu_switch, .-fusedrnn_emu_switch
.section .note.GNU-stack,"",@progbits
.text
)");
#endif

namespace fusedrnn {
namespace emu {
namespace {

using Clock = std::chrono::steady_clock;

// ---- settings and statistics ---------------------------------------------------------------
long env_long(const char* name, long fallback, long lo, long hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi) {
    std::fprintf(stderr, "fusedrnn emu: ignoring %s=%s (expected an integer in [%ld, %ld])\n", name, v, lo, hi);
    return fallback;
  }
  return x;
}

constexpr int kDefaultSms = 132;
std::atomic<int> g_sm_count{static_cast<int>(env_long("FUSEDRNN_EMU_SMS", kDefaultSms, 1, 100000))};
std::atomic<std::uint64_t> g_seed{static_cast<std::uint64_t>(env_long("FUSEDRNN_EMU_SEED", 0, 0, 1L << 62))};
std::atomic<int> g_workers{static_cast<int>(
    env_long("FUSEDRNN_EMU_WORKERS", std::max(1u, std::thread::hardware_concurrency()), 1, 4096))};
std::atomic<double> g_timeout{static_cast<double>(env_long("FUSEDRNN_EMU_TIMEOUT", 120, 1, 1L << 30))};
#ifdef FUSEDRNN_EMU_ASAN
constexpr long kDefaultStackKb = 512;
#else
constexpr long kDefaultStackKb = 64;
#endif
const std::size_t g_stack_bytes =
    static_cast<std::size_t>(env_long("FUSEDRNN_EMU_STACK_KB", kDefaultStackKb, 16, 1L << 20)) * 1024;

struct AtomicStats {
  std::atomic<std::uint64_t> launches{0}, cooperative_launches{0}, blocks{0}, threads{0}, block_barriers{0},
      warp_collectives{0}, grid_barriers{0}, cooperative_smem_bytes{0}, last_cooperative_smem{0};
};
AtomicStats g_stats;

// ---- fibers --------------------------------------------------------------------------------
enum class State : std::uint8_t { kReady, kBlock, kWarp, kGrid, kYield, kExited };
constexpr std::uint64_t kCanary = 0x5ca1ab1e0ddba11ull;

struct Fiber {
  void* sp = nullptr;  // the saved stack pointer while suspended
#ifdef FUSEDRNN_EMU_UCONTEXT
  ucontext_t uc;
#endif
  char* stack = nullptr;
  uint3 idx{0, 0, 0};
  int linear = 0;
  State state = State::kReady;
  // Where it waits.
  const char* what = "";
  const char* file = "";
  int line = 0;
  BlockReduce reduce = BlockReduce::kNone;
  int predicate = 0;
  WarpOp op = WarpOp::kSync;
  unsigned mask = 0;
  std::uint64_t value = 0;
  int arg = 0;
  int width = 32;
  std::uint64_t result = 0;
#ifdef FUSEDRNN_EMU_ASAN
  void* fake_stack = nullptr;
#endif
};

struct Launch;

// What one OS thread needs to run blocks: fiber stacks (one region, reused), the dynamic shared
// memory buffer, the scheduler's own context.
struct Worker {
  char* region = nullptr;
  std::size_t region_fibers = 0;
  std::vector<Fiber> fibers;
  std::vector<int> ready;
  std::vector<unsigned char> smem;
  void* sched_sp = nullptr;
#ifdef FUSEDRNN_EMU_UCONTEXT
  ucontext_t sched_uc;
#endif
  Fiber* current = nullptr;
  Launch* launch = nullptr;
  bool thread_failed = false;  // the current fiber called trap()
#ifdef FUSEDRNN_EMU_ASAN
  void* fake_stack = nullptr;
  const void* sched_bottom = nullptr;
  std::size_t sched_size = 0;
#endif

  void reserve(std::size_t n);
};

// Dynamic shared memory starts 128-byte aligned, as on a GPU (wmma tiles need 256-bit alignment).
constexpr std::size_t kSmemAlign = 128;
inline unsigned char* smem_base(Worker& W) {
  const std::uintptr_t p = reinterpret_cast<std::uintptr_t>(W.smem.data());
  return reinterpret_cast<unsigned char*>((p + kSmemAlign - 1) / kSmemAlign * kSmemAlign);
}
thread_local Worker tl_worker;

// ---- stack overflows -----------------------------------------------------------------------
// The lowest page of every fiber stack is a guard (PROT_NONE while the process has fewer than
// kGuardBudget of them: each splits the mapping, and Linux caps a process's mappings), with a
// canary above it; a fault in a guard page is reported as a stack overflow by a SIGSEGV handler
// on an alternate signal stack, then the process aborts, as the kernel's memory can't be trusted.
constexpr std::size_t kPage = 4096;
constexpr long kGuardBudget = 16384;
std::atomic<long> g_guarded{0};
constexpr int kMaxRegions = 4096;
std::atomic<std::uintptr_t> g_region_lo[kMaxRegions], g_region_hi[kMaxRegions];
std::atomic<int> g_regions{0};
struct sigaction g_old_segv, g_old_bus;

void write_str(const char* s) {
  const ssize_t r = ::write(2, s, std::strlen(s));
  (void)r;
}

void on_fault(int sig, siginfo_t* info, void* ucontext) {
  const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  const int nregions = g_regions.load();
  for (int i = 0; i < nregions; ++i) {
    const std::uintptr_t lo = g_region_lo[i].load(), hi = g_region_hi[i].load();
    if (addr >= lo && addr < hi && (addr - lo) % g_stack_bytes < kPage) {
      char kb[32];
      std::snprintf(kb, sizeof kb, "%zu", g_stack_bytes / 1024);
      write_str("fusedrnn emu: a kernel thread overflowed its stack of ");
      write_str(kb);
      write_str(" KB (raise FUSEDRNN_EMU_STACK_KB)\n");
      signal(SIGABRT, SIG_DFL);
      std::abort();
    }
  }
  // Not ours: hand it to whoever handled it before.
  const struct sigaction& old = sig == SIGBUS ? g_old_bus : g_old_segv;
  if (old.sa_flags & SA_SIGINFO) {
    if (old.sa_sigaction != nullptr) return old.sa_sigaction(sig, info, ucontext);
  } else if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN && old.sa_handler != nullptr) {
    return old.sa_handler(sig);
  }
  sigaction(sig, &old, nullptr);  // the default action, on return the fault repeats
}

void install_fault_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_old_segv);
    sigaction(SIGBUS, &sa, &g_old_bus);
  });
  // This thread's alternate signal stack, unless it has one.
  thread_local bool has_altstack = false;
  if (!has_altstack) {
    stack_t old;
    if (sigaltstack(nullptr, &old) == 0 && (old.ss_flags & SS_DISABLE)) {
      stack_t st;
      st.ss_size = 64 * 1024;
      st.ss_sp = std::malloc(st.ss_size);
      st.ss_flags = 0;
      if (st.ss_sp != nullptr) sigaltstack(&st, nullptr);
    }
    has_altstack = true;
  }
}

void Worker::reserve(std::size_t n) {
  if (n <= region_fibers) return;
  install_fault_handler();
  int slot = -1;
  if (region != nullptr) {
    const auto lo = reinterpret_cast<std::uintptr_t>(region);
    for (int i = 0; i < g_regions.load(); ++i) {
      if (g_region_lo[i].load() == lo) slot = i;
    }
    munmap(region, region_fibers * g_stack_bytes);
  }
  const std::size_t count = std::max<std::size_t>(n, 32);
  void* p = mmap(nullptr, count * g_stack_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("fusedrnn emu: cannot map fiber stacks");
  region = static_cast<char*>(p);
  region_fibers = count;
  if (g_guarded.fetch_add(static_cast<long>(count)) + static_cast<long>(count) <= kGuardBudget) {
    for (std::size_t i = 0; i < count; ++i) mprotect(region + i * g_stack_bytes, kPage, PROT_NONE);
  }
  if (slot < 0 && g_regions.load() < kMaxRegions) slot = g_regions.fetch_add(1);
  if (slot >= 0 && slot < kMaxRegions) {
    g_region_lo[slot].store(reinterpret_cast<std::uintptr_t>(region));
    g_region_hi[slot].store(reinterpret_cast<std::uintptr_t>(region) + count * g_stack_bytes);
  }
}



struct Launch {
  LaunchConfig cfg;
  void (*body)(void*) = nullptr;
  void* arg = nullptr;
  unsigned nblocks = 0, nthreads = 0;
  std::vector<unsigned> block_order;
  std::atomic<unsigned> next_block{0};
  std::atomic<bool> aborted{false};
  Clock::time_point deadline;
  std::mutex mu;
  std::string error;
  // The grid barrier of a cooperative launch.
  std::condition_variable grid_cv;
  unsigned grid_arrived = 0;
  std::uint64_t grid_generation = 0;

  void fail(const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (error.empty()) error = message;
    }
    aborted.store(true);
    grid_cv.notify_all();
  }
};

std::string dims(const uint3& d) {
  return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
}
std::string dims(const dim3& d) { return dims(uint3{d.x, d.y, d.z}); }
std::string site(const char* file, int line) {
  std::string f(file);
  const auto slash = f.find_last_of('/');
  if (slash != std::string::npos) f = f.substr(slash + 1);
  return f + ":" + std::to_string(line);
}
std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// "kernel K (grid G, block B): block (x,y,z)[, thread (a,b,c)]: "
std::string where(const Launch& L, const Fiber* f) {
  std::string s = "fusedrnn emu: kernel " + std::string(L.cfg.kernel) + " (grid " + dims(L.cfg.grid) + ", block " +
                  dims(L.cfg.block) + "): block " + dims(blockIdx);
  if (f != nullptr) s += ", thread " + dims(f->idx);
  return s + ": ";
}

[[noreturn]] void fiber_entry();

void init_fiber(Worker& W, Fiber& f, std::size_t slot) {
  f.stack = W.region + slot * g_stack_bytes;
#ifdef FUSEDRNN_EMU_ASAN
  ASAN_UNPOISON_MEMORY_REGION(f.stack + kPage, g_stack_bytes - kPage);
  f.fake_stack = nullptr;
#endif
  std::memcpy(f.stack + kPage, &kCanary, sizeof kCanary);  // just above the guard page
#ifdef FUSEDRNN_EMU_UCONTEXT
  getcontext(&f.uc);
  f.uc.uc_stack.ss_sp = f.stack + kPage;
  f.uc.uc_stack.ss_size = g_stack_bytes - kPage;
  f.uc.uc_link = nullptr;
  makecontext(&f.uc, fiber_entry, 0);
#else
  // The frame fusedrnn_emu_switch restores: control words, six registers, then fiber_entry as the
  // return address, entered with rsp = 8 (mod 16) as after a call.
  auto* top = reinterpret_cast<std::uint64_t*>(
      (reinterpret_cast<std::uintptr_t>(f.stack + g_stack_bytes) & ~std::uintptr_t(15)));
  std::uint64_t* sp = top;
  *--sp = 0;  // fiber_entry's own return address: none
  *--sp = reinterpret_cast<std::uint64_t>(&fiber_entry);
  for (int r = 0; r < 6; ++r) *--sp = 0;
  *--sp = 0x1F80ull | (0x037Full << 32);  // MXCSR and the x87 control word at their defaults
  f.sp = sp;
#endif
}

void check_canary(const Launch& L, const Fiber& f) {
  std::uint64_t c;
  std::memcpy(&c, f.stack + kPage, sizeof c);
  if (c != kCanary) {
    std::fprintf(stderr, "%sthe thread overflowed its %zu KB stack (FUSEDRNN_EMU_STACK_KB)\n", where(L, &f).c_str(),
                 g_stack_bytes / 1024);
    std::abort();  // the neighbouring stacks are corrupt: nothing can be trusted after this
  }
}

// Scheduler -> fiber.
void resume(Worker& W, Fiber& f) {
  threadIdx = f.idx;
  W.current = &f;
  f.state = State::kReady;
#ifdef FUSEDRNN_EMU_ASAN
  __sanitizer_start_switch_fiber(&W.fake_stack, f.stack + kPage, g_stack_bytes - kPage);
#endif
#ifdef FUSEDRNN_EMU_UCONTEXT
  swapcontext(&W.sched_uc, &f.uc);
#else
  fusedrnn_emu_switch(&W.sched_sp, f.sp);
#endif
#ifdef FUSEDRNN_EMU_ASAN
  __sanitizer_finish_switch_fiber(W.fake_stack, nullptr, nullptr);
#endif
  W.current = nullptr;
  check_canary(*W.launch, f);
}

// Fiber -> scheduler; returns when the scheduler resumes it.
void suspend(Worker& W, Fiber& f, bool exiting) {
#ifdef FUSEDRNN_EMU_ASAN
  __sanitizer_start_switch_fiber(exiting ? nullptr : &f.fake_stack, W.sched_bottom, W.sched_size);
#else
  (void)exiting;
#endif
#ifdef FUSEDRNN_EMU_UCONTEXT
  swapcontext(&f.uc, &W.sched_uc);
#else
  fusedrnn_emu_switch(&f.sp, W.sched_sp);
#endif
#ifdef FUSEDRNN_EMU_ASAN
  __sanitizer_finish_switch_fiber(f.fake_stack, &W.sched_bottom, &W.sched_size);
#endif
}

void fiber_entry() {
  Worker& W = tl_worker;
#ifdef FUSEDRNN_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &W.sched_bottom, &W.sched_size);
#endif
  Fiber& f = *W.current;
  try {
    W.launch->body(W.launch->arg);
  } catch (const std::exception& e) {
    W.launch->fail(where(*W.launch, &f) + "exception in the kernel: " + e.what());
  } catch (...) {
    W.launch->fail(where(*W.launch, &f) + "unknown exception in the kernel");
  }
  f.state = State::kExited;
  suspend(W, f, true);
  std::abort();  // an exited fiber is never resumed
}

Fiber& current_fiber(const char* what) {
  Fiber* f = tl_worker.current;
  if (f == nullptr) throw std::logic_error(std::string("fusedrnn emu: ") + what + " called outside a kernel");
  return *f;
}

// ---- the scheduler of one block ------------------------------------------------------------
struct Xorshift {
  std::uint64_t s;
  explicit Xorshift(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {
    if (s == 0) s = 1;
  }
  std::uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

template <typename T>
void shuffle(std::vector<T>& v, std::uint64_t seed) {
  Xorshift rng(seed);
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.next() % i]);
}

const char* state_name(State s) {
  switch (s) {
    case State::kReady: return "running";
    case State::kBlock: return "at a block barrier";
    case State::kWarp: return "at a warp collective";
    case State::kGrid: return "at grid.sync()";
    case State::kYield: return "in __nanosleep";
    case State::kExited: return "exited";
  }
  return "?";
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::kSync: return "__syncwarp";
    case WarpOp::kShflIdx: return "__shfl_sync";
    case WarpOp::kShflUp: return "__shfl_up_sync";
    case WarpOp::kShflDown: return "__shfl_down_sync";
    case WarpOp::kShflXor: return "__shfl_xor_sync";
    case WarpOp::kBallot: return "__ballot_sync";
    case WarpOp::kAny: return "__any_sync";
    case WarpOp::kAll: return "__all_sync";
  }
  return "?";
}

std::string describe(const Fiber& f) {
  std::string s = "thread " + dims(f.idx) + " " + state_name(f.state);
  if (f.state == State::kBlock || f.state == State::kGrid) s += std::string(" (") + f.what + " at " + site(f.file, f.line) + ")";
  if (f.state == State::kWarp) s += std::string(" (") + op_name(f.op) + " mask " + hex(f.mask) + " at " + site(f.file, f.line) + ")";
  return s;
}

struct BlockRun {
  Launch& L;
  Worker& W;
  unsigned n;
  std::vector<Fiber>& fibers;
  bool failed = false;

  void fail(const Fiber* f, const std::string& message) {
    L.fail(where(L, f) + message);
    failed = true;
  }

  // Source lane of a shuffle (PTX shfl's rule: a source outside the lane's segment of `width` lanes
  // gives the lane its own value), or -1 for "own value".
  static int shuffle_source(WarpOp op, int lane, int arg, int width) {
    const int seg_start = lane & ~(width - 1), seg_end = seg_start + width - 1;
    int j;
    switch (op) {
      case WarpOp::kShflIdx: return seg_start | (arg & (width - 1));
      case WarpOp::kShflUp: j = lane - arg; return j >= seg_start ? j : -1;
      case WarpOp::kShflDown: j = lane + arg; return j <= seg_end ? j : -1;
      case WarpOp::kShflXor: j = lane ^ (arg & 31); return j <= seg_end ? j : -1;
      default: return -1;
    }
  }

  // Completes every warp collective whose lanes have all arrived; returns whether any did.
  bool resolve_warps() {
    bool progress = false;
    for (unsigned w0 = 0; w0 < n && !failed; w0 += 32) {
      const unsigned lanes = std::min(32u, n - w0);
      for (unsigned l = 0; l < lanes && !failed; ++l) {
        Fiber& f = fibers[w0 + l];
        if (f.state != State::kWarp) continue;
        const unsigned mask = f.mask;
        if (!(mask >> l & 1u)) {
          fail(&f, std::string(op_name(f.op)) + " at " + site(f.file, f.line) + " with mask " + hex(mask) +
                       ", which does not include the calling lane " + std::to_string(l));
          return progress;
        }
        if (f.width < 1 || f.width > 32 || (f.width & (f.width - 1)) != 0) {
          fail(&f, std::string(op_name(f.op)) + " at " + site(f.file, f.line) + " with width " +
                       std::to_string(f.width) + ": must be a power of two in [1, 32]");
          return progress;
        }
        bool complete = true;
        for (unsigned j = 0; j < 32; ++j) {
          if (!(mask >> j & 1u)) continue;
          if (j >= lanes) {
            fail(&f, std::string(op_name(f.op)) + " at " + site(f.file, f.line) + " with mask " + hex(mask) +
                         " names lane " + std::to_string(j) + ", which does not exist (the block has " +
                         std::to_string(n) + " threads)");
            return progress;
          }
          const Fiber& g = fibers[w0 + j];
          if (g.state == State::kExited) {
            fail(&f, std::string(op_name(f.op)) + " at " + site(f.file, f.line) + " with mask " + hex(mask) +
                         " waits for lane " + std::to_string(j) + " (thread " + dims(g.idx) + "), which has exited");
            return progress;
          }
          if (g.state != State::kWarp || g.mask != mask) {
            complete = false;
            continue;
          }
          if (g.op != f.op || g.line != f.line || std::strcmp(g.file, f.file) != 0 || g.width != f.width) {
            fail(&f, "lanes of one mask meet at different warp collectives: lane " + std::to_string(l) + " at " +
                         op_name(f.op) + " (" + site(f.file, f.line) + "), lane " + std::to_string(j) + " at " +
                         op_name(g.op) + " (" + site(g.file, g.line) + ")");
            return progress;
          }
        }
        if (!complete) continue;
        // Every lane of the mask is here: compute each lane's result.
        std::uint64_t ballot = 0;
        for (unsigned j = 0; j < 32; ++j) {
          if ((mask >> j & 1u) && fibers[w0 + j].value != 0) ballot |= 1ull << j;
        }
        for (unsigned j = 0; j < 32; ++j) {
          if (!(mask >> j & 1u)) continue;
          Fiber& g = fibers[w0 + j];
          switch (g.op) {
            case WarpOp::kSync: g.result = 0; break;
            case WarpOp::kBallot: g.result = ballot; break;
            case WarpOp::kAny: g.result = ballot != 0; break;
            case WarpOp::kAll: g.result = ballot == mask; break;
            default: {
              const int src = shuffle_source(g.op, static_cast<int>(j), g.arg, g.width);
              if (src < 0 || src == static_cast<int>(j)) {
                g.result = g.value;
              } else if (static_cast<unsigned>(src) >= lanes || fibers[w0 + src].state == State::kExited) {
                fail(&g, std::string(op_name(g.op)) + " at " + site(g.file, g.line) + " reads lane " +
                             std::to_string(src) + ", which has exited");
                return progress;
              } else if (!(mask >> src & 1u)) {
                fail(&g, std::string(op_name(g.op)) + " at " + site(g.file, g.line) + " reads lane " +
                             std::to_string(src) + ", which is not in the mask " + hex(mask) +
                             " (its value is undefined on a GPU)");
                return progress;
              } else {
                g.result = fibers[w0 + src].value;
              }
            }
          }
        }
        for (unsigned j = 0; j < 32; ++j) {
          if (mask >> j & 1u) {
            fibers[w0 + j].state = State::kReady;
            W.ready.push_back(static_cast<int>(w0 + j));
          }
        }
        g_stats.warp_collectives.fetch_add(1, std::memory_order_relaxed);
        progress = true;
      }
    }
    return progress;
  }

  // The first thread in `state`, or an exited one, for messages.
  const Fiber* first_in(State state) const {
    for (const Fiber& f : fibers) {
      if (&f - fibers.data() >= static_cast<std::ptrdiff_t>(n)) break;
      if (f.state == state) return &f;
    }
    return nullptr;
  }

  // Completes the block barrier when every thread is at it.
  bool resolve_block_barrier(unsigned at_block, unsigned exited) {
    const Fiber& first = *first_in(State::kBlock);
    if (exited > 0) {
      const Fiber& gone = *first_in(State::kExited);
      fail(&gone, std::string(first.what) + " at " + site(first.file, first.line) + " is not reached by thread " +
                      dims(gone.idx) + ", which exited (" + std::to_string(exited) + " of " + std::to_string(n) +
                      " threads exited, " + std::to_string(at_block) + " wait at the barrier)");
      return false;
    }
    if (at_block < n) return false;  // others still on their way (spinning, or in a warp collective)
    int count = 0;
    for (unsigned i = 0; i < n; ++i) {
      const Fiber& f = fibers[i];
      if (f.line != first.line || std::strcmp(f.file, first.file) != 0 || f.reduce != first.reduce) {
        fail(&f, std::string("threads wait at different barriers: thread ") + dims(first.idx) + " at " + first.what +
                     " (" + site(first.file, first.line) + "), thread " + dims(f.idx) + " at " + f.what + " (" +
                     site(f.file, f.line) + ")");
        return false;
      }
      count += f.predicate != 0;
    }
    const int result = first.reduce == BlockReduce::kCount ? count
                       : first.reduce == BlockReduce::kAnd ? count == static_cast<int>(n)
                       : first.reduce == BlockReduce::kOr  ? count > 0
                                                           : 0;
    for (unsigned i = 0; i < n; ++i) {
      fibers[i].result = static_cast<std::uint64_t>(result);
      fibers[i].state = State::kReady;
      W.ready.push_back(static_cast<int>(i));
    }
    g_stats.block_barriers.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  // The whole grid's barrier: this block has arrived; wait for the others.
  bool grid_wait() {
    std::unique_lock<std::mutex> lock(L.mu);
    const std::uint64_t generation = L.grid_generation;
    if (++L.grid_arrived == L.nblocks) {
      L.grid_arrived = 0;
      ++L.grid_generation;
      g_stats.grid_barriers.fetch_add(1, std::memory_order_relaxed);
      L.grid_cv.notify_all();
      return true;
    }
    while (L.grid_generation == generation && !L.aborted.load()) {
      if (L.grid_cv.wait_until(lock, std::min(L.deadline, Clock::now() + std::chrono::milliseconds(100))) ==
              std::cv_status::timeout &&
          Clock::now() >= L.deadline) {
        lock.unlock();
        fail(first_in(State::kGrid), "timed out after " + std::to_string(static_cast<int>(g_timeout.load())) +
                                         " s at grid.sync() (FUSEDRNN_EMU_TIMEOUT): " +
                                         std::to_string(L.grid_arrived) + " of " + std::to_string(L.nblocks) +
                                         " blocks have arrived");
        return false;
      }
    }
    return !L.aborted.load();
  }

  void deadlock() {
    std::string s = "deadlock: no thread can go on.";
    int shown = 0;
    for (unsigned i = 0; i < n && shown < 8; ++i) {
      if (fibers[i].state == State::kExited) continue;
      s += (shown ? "; " : " ") + describe(fibers[i]);
      ++shown;
    }
    unsigned exited = 0;
    for (unsigned i = 0; i < n; ++i) exited += fibers[i].state == State::kExited;
    if (exited) s += "; " + std::to_string(exited) + " threads exited";
    fail(nullptr, s);
  }

  void run() {
    W.ready.clear();
    for (unsigned i = 0; i < n; ++i) W.ready.push_back(static_cast<int>(i));
    const std::uint64_t seed = g_seed.load();
    const unsigned block_linear = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    std::uint64_t round = 0;
    int idle_rounds = 0;
    std::vector<int> running;
    while (true) {
      if (seed != 0) shuffle(W.ready, seed ^ (std::uint64_t(block_linear) << 32) ^ (round * 0x2545F4914F6CDD1Dull));
      ++round;
      running.swap(W.ready);
      W.ready.clear();
      for (int i : running) {
        resume(W, fibers[i]);
        if (L.aborted.load(std::memory_order_relaxed)) return;
      }
      unsigned exited = 0, at_block = 0, at_warp = 0, at_grid = 0, at_yield = 0;
      for (unsigned i = 0; i < n; ++i) {
        switch (fibers[i].state) {
          case State::kExited: ++exited; break;
          case State::kBlock: ++at_block; break;
          case State::kWarp: ++at_warp; break;
          case State::kGrid: ++at_grid; break;
          case State::kYield: ++at_yield; break;
          case State::kReady: break;
        }
      }
      if (exited == n) return;
      bool progress = false;
      if (at_warp) progress |= resolve_warps();
      if (failed) return;
      if (at_block) progress |= resolve_block_barrier(at_block, exited);
      if (failed) return;
      if (at_grid) {
        if (exited > 0) {
          const Fiber& first = *first_in(State::kGrid);
          const Fiber& gone = *first_in(State::kExited);
          fail(&gone, "grid.sync() at " + site(first.file, first.line) + " is not reached by thread " + dims(gone.idx) +
                          ", which exited");
          return;
        }
        if (!L.cfg.cooperative) {
          fail(first_in(State::kGrid), "grid.sync() in a kernel that was not launched cooperatively");
          return;
        }
        if (at_grid == n) {
          if (!grid_wait()) return;
          for (unsigned i = 0; i < n; ++i) {
            fibers[i].state = State::kReady;
            W.ready.push_back(static_cast<int>(i));
          }
          progress = true;
        }
      }
      if (at_yield) {
        for (unsigned i = 0; i < n; ++i) {
          if (fibers[i].state == State::kYield) {
            fibers[i].state = State::kReady;
            W.ready.push_back(static_cast<int>(i));
          }
        }
        if (!progress) {
          // Only spinning: let the other blocks' threads run, backing off, and give up at the deadline.
          if (++idle_rounds > 64) std::this_thread::sleep_for(std::chrono::microseconds(std::min(idle_rounds, 1000)));
          else std::this_thread::yield();
          if ((idle_rounds & 15) == 0 && Clock::now() >= L.deadline) {
            fail(first_in(State::kReady), "timed out after " + std::to_string(static_cast<int>(g_timeout.load())) +
                                              " s spinning in __nanosleep (FUSEDRNN_EMU_TIMEOUT)");
            return;
          }
        } else {
          idle_rounds = 0;
        }
        progress = true;
      } else {
        idle_rounds = 0;
      }
      if (!progress) {
        deadlock();
        return;
      }
    }
  }
};

void run_block(Launch& L, Worker& W, unsigned linear) {
  const dim3 g = L.cfg.grid, b = L.cfg.block;
  gridDim = g;
  blockDim = b;
  blockIdx = uint3{linear % g.x, (linear / g.x) % g.y, linear / (g.x * g.y)};
  const unsigned n = L.nthreads;
  W.reserve(n);
  if (W.fibers.size() < n) W.fibers.resize(n);
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = W.fibers[i];
    f = Fiber();
    f.linear = static_cast<int>(i);
    f.idx = uint3{i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
    init_fiber(W, f, i);
  }
  if (L.cfg.smem > 0) {
    if (W.smem.size() < L.cfg.smem + kSmemAlign) W.smem.resize(L.cfg.smem + kSmemAlign);
    std::memset(smem_base(W), 0xFF, L.cfg.smem);  // NaN in every floating type, -1 in every integer
  }
  W.launch = &L;
  BlockRun run{L, W, n, W.fibers};
  run.run();
  W.launch = nullptr;
  g_stats.blocks.fetch_add(1, std::memory_order_relaxed);
  g_stats.threads.fetch_add(n, std::memory_order_relaxed);
}

// ---- worker threads ------------------------------------------------------------------------
// Runs fn(0..n-1) at the same time, on the caller's thread and n-1 pool threads; grows the pool so
// that every task gets a thread at once (a cooperative launch needs all its blocks alive).
class Pool {
 public:
  void run(int n, const std::function<void(int)>& fn) {
    if (n <= 1) {
      fn(0);
      return;
    }
    Batch batch;
    batch.remaining = n - 1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int i = 1; i < n; ++i) tasks_.push_back(Task{&fn, i, &batch});
      while (idle_ < static_cast<int>(tasks_.size())) {
        ++idle_;
        std::thread([this] { loop(); }).detach();
      }
    }
    cv_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lock(batch.mu);
    batch.cv.wait(lock, [&] { return batch.remaining == 0; });
  }

 private:
  struct Batch {
    std::mutex mu;
    std::condition_variable cv;
    int remaining = 0;
  };
  struct Task {
    const std::function<void(int)>* fn;
    int index;
    Batch* batch;
  };
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return !tasks_.empty(); });
      Task t = tasks_.front();
      tasks_.pop_front();
      --idle_;
      lock.unlock();
      (*t.fn)(t.index);
      {
        std::lock_guard<std::mutex> done(t.batch->mu);
        if (--t.batch->remaining == 0) t.batch->cv.notify_all();
      }
      lock.lock();
      ++idle_;
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> tasks_;
  int idle_ = 0;
};

// Never destroyed (its threads outlive static destruction); a forked child starts a fresh one, as
// the parent's threads do not exist there.
Pool* g_pool = new Pool();
void reset_pool_in_child() { g_pool = new Pool(); }
[[maybe_unused]] const int g_atfork = pthread_atfork(nullptr, nullptr, &reset_pool_in_child);

int threads_of(const dim3& d) { return static_cast<int>(d.x * d.y * d.z); }

}  // namespace

// ---- public API ----------------------------------------------------------------------------
DeviceProps device_props() {
  return DeviceProps{g_sm_count.load(), 1024, 2048, 32, 227 * 1024, 228 * 1024};
}
void set_sm_count(int n) { g_sm_count.store(n > 0 ? n : kDefaultSms); }
void set_schedule_seed(std::uint64_t seed) { g_seed.store(seed); }
std::uint64_t schedule_seed() { return g_seed.load(); }
void set_workers(int n) { g_workers.store(std::max(1, n)); }
void set_timeout(double seconds) { g_timeout.store(seconds > 0 ? seconds : 120.0); }

Stats stats() {
  return Stats{g_stats.launches.load(),       g_stats.cooperative_launches.load(), g_stats.blocks.load(),
               g_stats.threads.load(),        g_stats.block_barriers.load(),       g_stats.warp_collectives.load(),
               g_stats.grid_barriers.load(),  g_stats.cooperative_smem_bytes.load(),
               g_stats.last_cooperative_smem.load()};
}

int max_active_blocks_per_sm(int threads, std::size_t smem) {
  const DeviceProps p = device_props();
  if (threads <= 0 || threads > p.max_threads_per_block || smem > p.smem_per_block_optin) return 0;
  const int warps = (threads + 31) / 32;
  int blocks = std::min(p.max_blocks_per_sm, p.max_threads_per_sm / (warps * 32));
  if (smem > 0) blocks = std::min<int>(blocks, static_cast<int>(p.smem_per_sm / (smem + 1024)));  // 1 KB reserved per block
  return std::max(blocks, 0);
}

std::string kernel_name_from(const char* pretty) {
  std::string s(pretty);
  const auto eq = s.find("Kernel = ");
  if (eq == std::string::npos) return s;
  s = s.substr(eq + 9);
  const auto end = s.rfind(']');
  if (end != std::string::npos) s = s.substr(0, end);
  if (!s.empty() && s[0] == '&') s.erase(0, 1);
  for (const char* prefix : {"fusedrnn::", "{anonymous}::", "(anonymous namespace)::"}) {
    for (auto at = s.find(prefix); at != std::string::npos; at = s.find(prefix)) s.erase(at, std::strlen(prefix));
  }
  return s;
}

void run(const LaunchConfig& cfg, void (*body)(void*), void* arg) {
  if (tl_worker.current != nullptr) throw std::runtime_error("fusedrnn emu: a kernel launch inside a kernel");
  const DeviceProps props = device_props();
  const std::string name = std::string("fusedrnn emu: launch of ") + cfg.kernel + " with grid " + dims(cfg.grid) +
                           ", block " + dims(cfg.block) + ", " + std::to_string(cfg.smem) + " bytes of shared memory: ";
  const dim3 g = cfg.grid, b = cfg.block;
  if (g.x == 0 || g.y == 0 || g.z == 0 || b.x == 0 || b.y == 0 || b.z == 0)
    throw std::runtime_error(name + "invalid configuration argument (a dimension is 0)");
  if (g.y > 65535 || g.z > 65535 || b.x > 1024 || b.y > 1024 || b.z > 64 || threads_of(b) > props.max_threads_per_block)
    throw std::runtime_error(name + "invalid configuration argument (a dimension is too large)");
  if (cfg.smem > props.smem_per_block_optin)
    throw std::runtime_error(name + "too much shared memory (at most " + std::to_string(props.smem_per_block_optin) +
                             " bytes a block)");
  Launch L;
  L.cfg = cfg;
  L.body = body;
  L.arg = arg;
  L.nblocks = g.x * g.y * g.z;
  L.nthreads = static_cast<unsigned>(threads_of(b));
  L.deadline = Clock::now() + std::chrono::milliseconds(static_cast<long long>(g_timeout.load() * 1000));
  if (cfg.cooperative) {
    const long long fit = static_cast<long long>(props.sm_count) * max_active_blocks_per_sm(threads_of(b), cfg.smem);
    if (L.nblocks > fit)
      throw std::runtime_error(name + "too many blocks in cooperative launch (" + std::to_string(L.nblocks) +
                               " blocks, " + std::to_string(fit) + " can be resident on " +
                               std::to_string(props.sm_count) + " SMs)");
  }
  const std::uint64_t seed = g_seed.load();
  L.block_order.resize(L.nblocks);
  std::iota(L.block_order.begin(), L.block_order.end(), 0u);
  if (seed != 0) shuffle(L.block_order, seed);
  const int workers = cfg.cooperative ? static_cast<int>(L.nblocks)
                                      : static_cast<int>(std::min<unsigned>(L.nblocks, g_workers.load()));
  g_stats.launches.fetch_add(1, std::memory_order_relaxed);
  if (cfg.cooperative) {
    g_stats.cooperative_launches.fetch_add(1, std::memory_order_relaxed);
    g_stats.cooperative_smem_bytes.fetch_add(cfg.smem, std::memory_order_relaxed);
    g_stats.last_cooperative_smem.store(cfg.smem, std::memory_order_relaxed);
  }
  const uint3 saved_block = blockIdx;
  const dim3 saved_grid = gridDim, saved_dim = blockDim;
  g_pool->run(workers, [&L](int) {
    Worker& W = tl_worker;
    unsigned i;
    while (!L.aborted.load() && (i = L.next_block.fetch_add(1)) < L.nblocks) run_block(L, W, L.block_order[i]);
  });
  blockIdx = saved_block;
  gridDim = saved_grid;
  blockDim = saved_dim;
  if (L.aborted.load()) {
    std::lock_guard<std::mutex> lock(L.mu);
    throw std::runtime_error(L.error.empty() ? "fusedrnn emu: launch aborted" : L.error);
  }
}

int block_barrier(BlockReduce reduce, int predicate, const char* what, const char* file, int line) {
  Fiber& f = current_fiber(what);
  f.state = State::kBlock;
  f.reduce = reduce;
  f.predicate = predicate;
  f.what = what;
  f.file = file;
  f.line = line;
  suspend(tl_worker, f, false);
  return static_cast<int>(f.result);
}

std::uint64_t warp_collective(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width, const char* file,
                              int line) {
  Fiber& f = current_fiber(op_name(op));
  f.state = State::kWarp;
  f.op = op;
  f.mask = mask;
  f.value = value;
  f.arg = arg;
  f.width = width;
  f.file = file;
  f.line = line;
  suspend(tl_worker, f, false);
  return f.result;
}

void grid_barrier(const char* file, int line) {
  Fiber& f = current_fiber("grid.sync()");
  f.state = State::kGrid;
  f.what = "grid.sync()";
  f.file = file;
  f.line = line;
  suspend(tl_worker, f, false);
}

void yield_thread() {
  Fiber& f = current_fiber("__nanosleep");
  f.state = State::kYield;
  suspend(tl_worker, f, false);
}

unsigned char* dynamic_smem() {
  current_fiber("dynamic shared memory");
  return smem_base(tl_worker);
}

void trap(const char* what, const char* file, int line) {
  Worker& W = tl_worker;
  Fiber& f = current_fiber(what);
  W.launch->fail(where(*W.launch, &f) + what + " at " + site(file, line));
  f.state = State::kExited;
  suspend(W, f, true);
  std::abort();
}

unsigned lane_id() {
  return static_cast<unsigned>(current_fiber("lane id").linear) % 32u;
}

// ---- half and bfloat16 ---------------------------------------------------------------------
unsigned short float_to_half_bits(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<unsigned short>(0x7fffu);  // NaN: CUDA's canonical one
  if (a >= 0x477ff000u) return static_cast<unsigned short>(sign | 0x7c00u);  // >= 65520 rounds to infinity
  const std::uint32_t e = a >> 23;
  if (e < 113) {  // below 2^-14: a subnormal half (units of 2^-24), or zero
    if (e < 102) return static_cast<unsigned short>(sign);
    const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126 - e;
    std::uint32_t r = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<unsigned short>(sign | r);
  }
  std::uint32_t h = ((e - 112) << 10) | ((a & 0x7fffffu) >> 13);
  const std::uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<unsigned short>(sign | h);
}

float half_bits_to_float(unsigned short h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  std::uint32_t x;
  if (e == 0) {
    const float v = std::ldexp(static_cast<float>(m), -24);
    return sign ? -v : v;
  }
  x = e == 31 ? (sign | 0x7f800000u | (m << 13)) : (sign | ((e + 112) << 23) | (m << 13));
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

unsigned short float_to_bfloat16_bits(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>(0x7fffu);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<unsigned short>(x >> 16);
}

float bfloat16_bits_to_float(unsigned short b) {
  const std::uint32_t x = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

}  // namespace emu
}  // namespace fusedrnn

bool cooperative_groups::grid_group::is_valid() const {
  fusedrnn::emu::Worker& W = fusedrnn::emu::tl_worker;
  return W.launch != nullptr && W.launch->cfg.cooperative;
}
