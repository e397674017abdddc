// A cache of freed CPU buffers for the tensors the CPU layer ops allocate (outputs, the reserve,
// gate gradients, input gradients, packed weights and operands).
//
// A training step allocates and frees the same large buffers every call (fastai_rnn: about 10 MB
// per step, imdb_rnn about 25 MB). glibc gives such blocks back to the kernel when the top of its
// heap is free, and every 4 KB page of them then faults again on first touch: measured on this
// project's 2-core machine, 2200-2500 page faults and 6.7-7.8 ms of system time per fastai_rnn
// training step, interleaved with torch.nn's runs, against a step of 22 ms without them. Blocks of
// kMinBytes or more that this pool hands out go back to it when their tensor dies and are handed
// out again for requests of the same size class; the idle blocks are bounded by a limit
// (FUSEDRNN_CPU_CACHE_MB, default 1024; 0 turns the cache off) and given back to the system by
// release() (fusedrnn.empty_cache()).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace fusedrnn {
namespace cpu_pool {

// Smallest request served from the cache; smaller ones go to c10's CPU allocator.
constexpr size_t kMinBytes = size_t(256) << 10;

// An uninitialized, contiguous CPU tensor, as at::empty(sizes, options) (options must be on the CPU).
at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options);

struct Stats {
  int64_t cached_bytes;   // idle blocks held
  int64_t cached_blocks;
  int64_t limit_bytes;    // most idle bytes held (FUSEDRNN_CPU_CACHE_MB)
  int64_t hits;           // requests served by an idle block
  int64_t misses;         // requests that allocated a new block
};
Stats stats();

// Frees every idle block.
void release();

}  // namespace cpu_pool
}  // namespace fusedrnn
