"""fusedrnn's cache of freed CPU buffers (csrc/cpu/buffer_pool.h).

The CPU layer ops take their large buffers (outputs, the reserve, gradients; 256 KB or more) from
a cache: when such a tensor dies its block is kept and handed out again for a request of about
its size, instead of going back to the system and faulting in again page by page on the next
call. Idle blocks are bounded by FUSEDRNN_CPU_CACHE_MB (default 1024; 0 turns the cache off),
read once, at the first allocation. The GPU needs none of this: PyTorch's CUDA allocator caches.
"""
from . import _C

__all__ = ["empty_cache", "cache_info"]


def empty_cache():
    """Free the idle blocks of the CPU buffer cache (as torch.cuda.empty_cache does for the GPU)."""
    _C.empty_cache()


def cache_info():
    """The CPU buffer cache as a dict: cached_bytes and cached_blocks (idle blocks held), limit_bytes,
    hits and misses (requests of 256 KB or more served by an idle block, or by a new one)."""
    return _C.cache_info()
