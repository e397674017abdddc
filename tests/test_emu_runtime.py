"""The CUDA emulation layer on its own (csrc/emu/emu.h): tests/emu/selftest.cpp's kernels, built here
with the host compiler, plain and under AddressSanitizer + UBSan.

Each feature against a known answer (computed in the selftest's C++ or here), and each failure mode
reported: a divergent barrier, a shuffle naming an exited or absent lane, mismatched collectives, a
deadlock, a timeout, grid.sync() outside a cooperative launch, an oversized cooperative launch, a
trap, a stack overflow; a missing barrier gives a wrong answer; out-of-bounds reads and undefined
behaviour in a kernel are caught by the sanitizers.
"""
import os
import random
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = [os.path.join(ROOT, "csrc", "emu", "emu.cpp"), os.path.join(ROOT, "tests", "emu", "selftest.cpp")]
CXX = os.environ.get("CXX", "g++")
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]

FEATURES = ["indices", "static_shared", "dynamic_shared", "syncthreads_votes", "reduction", "shuffles", "votes",
            "syncwarp_partial_warp", "cooperative_groups", "grid_sync", "flags", "atomics", "half_bfloat16", "wmma"]
SEEDS = [0, 1, 12345]


def build(tmp_path_factory, name, flags):
    if shutil.which(CXX) is None:
        pytest.fail(f"no C++ compiler ({CXX}) to build the emulation layer's selftest")
    exe = str(tmp_path_factory.mktemp("emu") / name)
    cmd = [CXX, "-std=c++17", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", *flags, *SOURCES, "-o", exe]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, " ".join(cmd) + "\n" + result.stderr
    return exe


@pytest.fixture(scope="session")
def selftest(tmp_path_factory):
    return build(tmp_path_factory, "selftest", ["-O2"])


@pytest.fixture(scope="session")
def selftest_sanitized(tmp_path_factory):
    return build(tmp_path_factory, "selftest_asan", ["-O1", *SANITIZE])


def run(exe, case, seed=None, timeout=60, **env):
    args = [exe, case] + ([str(seed)] if seed is not None else [])
    environ = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", **env)
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=environ)


def test_every_case_is_tested(selftest):
    listed = set(run(selftest, "--list").stdout.split())
    tested = set(FEATURES) | {"missing_barrier", "wmma_missing_syncwarp", "thread_order", "abort_stack_overflow", "asan_out_of_bounds",
                              "ubsan_overflow"} | {c for c, _ in FAILURES}
    assert listed == tested


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", FEATURES)
def test_feature_known_answer(selftest, case, seed):
    r = run(selftest, case, seed)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


def test_missing_syncwarp_after_a_wmma_store_gives_a_wrong_answer(selftest):
    # The emulated store writes each lane's share of the tile: a lane reading the tile before the
    # warp synchronises reads stale memory (the case prints ok when the sum came out wrong).
    r = run(selftest, "wmma_missing_syncwarp")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@pytest.mark.parametrize("case", FEATURES)
def test_feature_under_asan_and_ubsan(selftest_sanitized, case):
    r = run(selftest_sanitized, case, 7)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
    assert "runtime error" not in r.stderr and "AddressSanitizer" not in r.stderr, r.stderr


@pytest.mark.parametrize("seed", SEEDS)
def test_missing_barrier_gives_a_wrong_answer(selftest, seed):
    # The same tree reduction as the "reduction" case, with its __syncthreads removed: the threads that
    # read their partners' shared memory before it is written see the NaN fill (or stale sums).
    expected = sum(i % 7 for i in range(128 * 5))
    r = run(selftest, "missing_barrier", seed)
    assert r.returncode == 0, r.stderr
    got = float(r.stdout.split()[1])
    assert not got == expected, f"the reduction without barriers gave the right sum {got}"


def thread_order(exe, seed):
    r = run(exe, "thread_order", seed)
    assert r.returncode == 0 and r.stdout.split()[-1] == "ok", r.stdout + r.stderr
    order = [int(v) for v in r.stdout.split()[:-1]]
    assert len(order) == 128
    return order[:64], order[64:]  # before and after the barrier


def test_thread_order_is_shuffled_from_a_seed(selftest):
    in_order = thread_order(selftest, 0)
    assert in_order == (list(range(64)), list(range(64)))
    shuffled = thread_order(selftest, 7)
    for phase in shuffled:
        assert sorted(phase) == list(range(64)) and phase != list(range(64))
    assert shuffled[0] != shuffled[1]  # a new order at the barrier
    assert thread_order(selftest, 7) == shuffled  # reproducible
    assert thread_order(selftest, 8) != shuffled


# Each failure mode: the case's name, and what the message must say (kernel, block, thread, cause).
FAILURES = [
    # Both blocks of this launch fail the same way; which one is reported first depends on which
    # OS thread gets there first (seen in CI: block 1), so either is right.
    ("err_divergent_barrier", ["kernel divergent_barrier_kernel", re.compile(r"block \([01],0,0\), thread \(48,0,0\)"),
                               "__syncthreads at selftest.cpp:", "is not reached by thread (48,0,0), which exited"]),
    ("err_different_barriers", ["kernel different_barriers_kernel", "threads wait at different barriers"]),
    ("err_shfl_exited_source", ["kernel shfl_exited_source_kernel", "__shfl_sync at selftest.cpp:",
                                "reads lane 31, which has exited"]),
    ("err_shfl_exited_in_mask", ["kernel shfl_exited_mask_kernel", "waits for lane 7 (thread (7,0,0)), which has exited"]),
    ("err_shfl_absent_lane", ["names lane 20, which does not exist (the block has 20 threads)"]),
    ("err_shfl_outside_mask", ["thread (16,0,0)", "reads lane 3, which is not in the mask 0xffff0000"]),
    ("err_mixed_collectives", ["lanes of one mask meet at different warp collectives", "__shfl_sync", "__ballot_sync"]),
    ("err_deadlock", ["kernel deadlock_kernel", "deadlock: no thread can go on",
                      "thread (0,0,0) at a block barrier", "thread (1,0,0) at a warp collective"]),
    ("err_grid_sync_not_cooperative", ["grid.sync() in a kernel that was not launched cooperatively"]),
    ("err_cooperative_too_large", ["too many blocks in cooperative launch (5 blocks, 4 can be resident on 2 SMs)"]),
    ("err_timeout", ["kernel spin_forever_kernel", "timed out after 1 s spinning in __nanosleep"]),
    ("err_trap", ["kernel trap_kernel", "block (1,0,0), thread (5,0,0)", "__trap() at selftest.cpp:"]),
    ("err_bad_config", ["block (2048,1,1)", "invalid configuration argument"]),
    ("err_wmma_misaligned", ["kernel wmma_misaligned_kernel", "wmma: a pointer not 256-bit aligned at selftest.cpp:"]),
]


@pytest.mark.parametrize("case,says", FAILURES, ids=[c for c, _ in FAILURES])
def test_failure_is_reported(selftest, case, says):
    r = run(selftest, case)
    assert r.returncode == 0, r.stderr
    message = r.stdout.strip().splitlines()[-1]
    assert message.startswith("ERROR: fusedrnn emu: "), r.stdout
    for part in says:
        found = part.search(message) if isinstance(part, re.Pattern) else part in message
        assert found, f"{part!r} not in {message!r}"


@pytest.mark.parametrize("case,says", FAILURES[:8], ids=[c for c, _ in FAILURES[:8]])
def test_failure_is_reported_under_sanitizers(selftest_sanitized, case, says):
    r = run(selftest_sanitized, case, 3)
    assert r.returncode == 0 and "ERROR: fusedrnn emu: " in r.stdout, r.stdout + r.stderr
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr


def test_stack_overflow_is_reported(selftest):
    r = run(selftest, "abort_stack_overflow")
    assert r.returncode != 0
    assert "a kernel thread overflowed its stack of 64 KB (raise FUSEDRNN_EMU_STACK_KB)" in r.stderr, r.stderr


def test_asan_catches_an_out_of_bounds_read_in_a_kernel(selftest_sanitized):
    r = run(selftest_sanitized, "asan_out_of_bounds")
    assert r.returncode != 0
    assert "AddressSanitizer: heap-buffer-overflow" in r.stderr and "out_of_bounds_kernel" in r.stderr, r.stderr


def test_ubsan_catches_undefined_behaviour_in_a_kernel(selftest_sanitized):
    r = run(selftest_sanitized, "ubsan_overflow")
    assert r.returncode != 0
    assert "runtime error: signed integer overflow" in r.stderr, r.stderr


def test_half_and_bfloat16_conversions_match_numpy_and_torch(selftest):
    rng = random.Random(0)
    bits = [rng.getrandbits(32) for _ in range(20000)]
    # Edges: zeros, the float16 range's ends, ties of both formats, subnormals of both, inf, NaN.
    bits += [0x00000000, 0x80000000, 0x477fe000, 0x477fefff, 0x477ff000, 0x33000000, 0x33000001, 0x33800000,
             0x387fc000, 0x38800000, 0x3f801000, 0x3f803000, 0x3f808000, 0x3f818000, 0x00000001, 0x00400000,
             0x7f7fffff, 0x7f800000, 0xff800000, 0x7fc00000]
    bits += [(e << 23) | (m << 12) for e in range(100, 145) for m in range(0, 2048, 97)]  # near the half range
    r = subprocess.run([selftest, "--convert"], input="\n".join(f"{b:08x}" for b in bits), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert len(rows) == len(bits)
    f32 = np.array(bits, dtype=np.uint32).view(np.float32)
    with np.errstate(over="ignore"):
        want_half = f32.astype(np.float16).view(np.uint16)
    want_bf16 = torch.from_numpy(f32.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    got_half = np.array([int(row[1], 16) for row in rows], dtype=np.uint16)
    got_bf16 = np.array([int(row[2], 16) for row in rows], dtype=np.uint16)
    nan = np.isnan(f32)
    assert np.array_equal(got_half[~nan], want_half[~nan])
    assert np.array_equal(got_bf16[~nan], want_bf16[~nan])
    assert (got_half[nan] == 0x7FFF).all() and (got_bf16[nan] == 0x7FFF).all()  # CUDA's canonical NaN
    # And back to float: exact.
    back_half = np.array([int(row[3], 16) for row in rows], dtype=np.uint32).view(np.float32)
    back_bf16 = np.array([int(row[4], 16) for row in rows], dtype=np.uint32).view(np.float32)
    assert np.array_equal(back_half[~nan], want_half[~nan].view(np.float16).astype(np.float32))
    assert np.array_equal(back_bf16[~nan], (want_bf16[~nan].astype(np.uint32) << 16).view(np.float32))
    assert all(int(row[0], 16) == b for row, b in zip(rows, bits))  # the rows line up with the inputs
