"""The CPU buffer cache (csrc/cpu/buffer_pool.h): freed blocks come back for the next call, results
do not depend on it, its limit and its environment variable hold."""
import gc
import hashlib
import os
import subprocess
import sys
import threading

import pytest
import torch

import fusedrnn
import fusedrnn.functional as FR
from helpers import make_nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def training_step(cell="gru", T=50, B=32, I=40, H=64, packed=False, seed=0, bidirectional=False):
    """One forward plus backward of a layer whose buffers are 256 KB and more (GRU: 1600 rows x 192
    gate columns, 1.2 MB); returns the output and every gradient."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [w.shape for w in make_nn(cell, I, H, dtype=torch.float32, bidirectional=bidirectional)._flat_weights]
    weights = [((torch.rand(s, generator=gen) - 0.5) / 4).requires_grad_() for s in shapes]
    x = torch.randn(T, B, I, generator=gen).requires_grad_()
    inp = x
    if packed:
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        lengths[0] = T
        inp = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, h = FR.rnn(cell, inp, None, weights, bidirectional=bidirectional)
    h = h[0] if cell == "lstm" else h
    data = out.data if packed else out
    dy = torch.randn(data.shape, generator=gen)
    (data * dy).sum().backward()
    return [data.detach(), h.detach(), x.grad] + [w.grad for w in weights]


def digest(tensors):
    return hashlib.sha256(b"".join(t.contiguous().numpy().tobytes() for t in tensors)).hexdigest()


def run_child(code, **env):
    """Runs code in a fresh interpreter with the given environment variables; returns its stdout."""
    full_env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + HERE, **env}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_second_call_reuses_every_block(bidirectional):
    # Earlier tests' reference cycles, collected mid-test, would hand their blocks to the cache and
    # push this call's blocks past its limit: collect them first and keep the collector off inside.
    gc.collect()
    gc.disable()
    try:
        _second_call_reuses_every_block(bidirectional)
    finally:
        gc.enable()


def _second_call_reuses_every_block(bidirectional):
    fusedrnn.empty_cache()
    before = fusedrnn.cache_info()
    first = training_step(bidirectional=bidirectional)
    after_first = fusedrnn.cache_info()
    new_blocks = after_first["misses"] - before["misses"]
    assert new_blocks >= 4  # output, reserve, gate gradients at least
    # Every block the call took is idle again once its tensors died.
    del first
    idle = fusedrnn.cache_info()
    assert idle["cached_blocks"] >= new_blocks and idle["cached_bytes"] >= new_blocks * (256 << 10)
    training_step(bidirectional=bidirectional)
    after_second = fusedrnn.cache_info()
    # An idle block serves requests up to a quarter smaller than it, so the order in which the
    # first call's blocks came back can leave one request of the second without its match (seen
    # once in CI: 16 misses for 15); more than one is the cache not reusing them.
    assert after_second["misses"] - idle["misses"] <= 1, "the same call allocated new blocks"
    assert after_second["hits"] - idle["hits"] >= new_blocks - 1


def test_directions_side_by_side_in_a_cached_block():
    fusedrnn.empty_cache()
    out = torch.ops.fusedrnn.concat_directions(torch.randn(1000, 2, 64), torch.randn(1000, 2, 64))
    assert fusedrnn.cache_info()["cached_bytes"] == 0
    del out
    assert fusedrnn.cache_info()["cached_bytes"] >= 1000 * 2 * 128 * 4


def test_results_do_not_depend_on_the_cache():
    # Blocks come back dirty: a second, different call on reused blocks gives what it gives on fresh
    # memory, and so does a run with the cache off (in a fresh process each, same thread count).
    code = (
        "import torch; torch.set_num_threads(2); import test_buffer_pool as t\n"
        "t.training_step(seed=1); t.training_step(cell='lstm', seed=3, packed=True)\n"
        "print(t.digest(t.training_step(seed=2) + t.training_step(cell='lstm', seed=4, packed=True)))\n"
        "print(t.fusedrnn.cache_info()['hits'] > 0)\n"
    )
    on = run_child(code).split()
    off = run_child(code, FUSEDRNN_CPU_CACHE_MB="0").split()
    assert on[1] == "True" and off[1] == "False"
    assert on[0] == off[0]


def test_cache_off_and_limit():
    code = (
        "import fusedrnn, test_buffer_pool as t\n"
        "t.training_step(); t.training_step(); info = fusedrnn.cache_info()\n"
        "print(info['limit_bytes'], info['cached_bytes'], info['hits'], info['misses'])\n"
    )
    limit, cached, hits, misses = map(int, run_child(code, FUSEDRNN_CPU_CACHE_MB="0").split())
    assert (limit, cached, hits, misses) == (0, 0, 0, 0)
    limit, cached, hits, misses = map(int, run_child(code, FUSEDRNN_CPU_CACHE_MB="1").split())
    assert limit == 1 << 20 and 0 < cached <= limit  # the output's 400 KB fits, the 1.2 MB gate gradients not
    assert misses > 0
    limit, *_ = map(int, run_child(code).split())
    assert limit == 1024 << 20


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_bad_limit_is_a_clear_error(value):
    code = (
        "import test_buffer_pool as t\n"
        "try:\n"
        "    t.training_step()\n"
        "except RuntimeError as e:\n"
        "    print(str(e).splitlines()[0])\n"
    )
    out = run_child(code, FUSEDRNN_CPU_CACHE_MB=value)
    assert "FUSEDRNN_CPU_CACHE_MB must be a whole number of megabytes" in out and repr(value) in out


def test_empty_cache_frees_idle_blocks_only():
    out, h, *grads = training_step()
    fusedrnn.empty_cache()
    assert fusedrnn.cache_info()["cached_bytes"] == 0 and fusedrnn.cache_info()["cached_blocks"] == 0
    # Tensors alive keep their blocks: still readable, and theirs again when they die.
    copy = out.clone()
    assert torch.equal(out, copy)
    del out, h, grads
    assert fusedrnn.cache_info()["cached_blocks"] > 0


def test_cached_tensors_resize_and_outlive_their_call():
    out = training_step()[0]
    flat = out.view(-1)
    n = flat.numel()
    grown = out.clone().view(-1)
    # A tensor from the cache can be resized, as at::empty's can (its storage is resizable).
    out.resize_(2 * n)
    out[n:] = 1.5
    assert torch.equal(out[:n], grown) and bool((out[n:] == 1.5).all())
    out.resize_(0)
    assert out.numel() == 0


def test_threads_share_the_cache():
    expected = [digest(training_step(seed=s)) for s in range(4)]
    results = [None] * 4

    def work(k):
        for _ in range(3):
            results[k] = digest(training_step(seed=k))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def _child_step(_):
    torch.set_num_threads(1)  # as DataLoader workers do
    before = fusedrnn.cache_info()["hits"]
    return digest(training_step(seed=5)), fusedrnn.cache_info()["hits"] > before


def test_forked_child_uses_the_cache():
    # The child inherits the cache (and its lock, taken around the fork by the forking thread).
    import multiprocessing
    training_step()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child_digest, child_hit = pool.apply_async(_child_step, (0,)).get(timeout=120)
    assert child_hit
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert child_digest == digest(training_step(seed=5))
    finally:
        torch.set_num_threads(before)
