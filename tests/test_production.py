"""What a production job meets besides the math: threads sharing a module, memory over many
iterations, allocations that cannot fit, deterministic mode, reproducible dropout, DDP."""
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

import fusedrnn
from helpers import assert_rel

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.RNN])
def test_threads_share_one_module_in_inference(cls):
    torch.manual_seed(0)
    m = cls(8, 16, 2, bidirectional=True).eval()
    inputs = [torch.randn(10 + i, 1 + i % 5, 8) for i in range(8)]
    with torch.no_grad():
        expected = [m(x)[0] for x in inputs]
    results, errors = {}, []

    def worker(k):
        try:
            with torch.no_grad():
                for _ in range(20):
                    for i in range(k, len(inputs), 4):
                        results[(k, i)] = m(inputs[i])[0]
                        assert torch.equal(results[(k, i)], expected[i])
        except Exception as e:  # noqa: BLE001  (reported below, with the thread)
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == len(inputs)


RSS_SCRIPT = textwrap.dedent("""
    import os, torch, fusedrnn
    torch.set_num_threads(2)
    torch.manual_seed(0)
    m = fusedrnn.LSTM(32, 64, 2, dropout=0.2)
    opt = torch.optim.SGD(m.parameters(), lr=1e-3)
    x = torch.randn(20, 16, 32)
    page = os.sysconf("SC_PAGE_SIZE")
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page
    samples = []
    for i in range(1000):
        opt.zero_grad()
        out, _ = m(x)
        out.pow(2).mean().backward()
        opt.step()
        if i >= 200 and i % 100 == 0:
            samples.append(rss())
    print(samples[0], samples[-1], max(samples))
""")


@pytest.mark.parametrize("cache_mb", ["1024", "0"], ids=["cache-on", "cache-off"])
def test_memory_stays_flat_over_1000_training_iterations(cache_mb):
    env = dict(os.environ, FUSEDRNN_CPU_CACHE_MB=cache_mb)
    r = subprocess.run([sys.executable, "-c", RSS_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    first, last, peak = map(int, r.stdout.split())
    # After warm-up (200 iterations) the resident set may move by allocator noise, not grow with
    # the iterations: a leak of one step's output (20 x 16 x 64 floats, 80 KB) would add 64 MB.
    assert last - first < 8 << 20 and peak - first < 8 << 20, (first, last, peak)


def test_an_allocation_that_cannot_fit_raises_torchs_out_of_memory_error():
    m = fusedrnn.GRU(1, 1 << 12)
    x = torch.zeros(1, 1, 1).expand(1 << 22, 1 << 10, 1)  # no memory of its own; the output would be 64 TB
    with pytest.raises(torch.OutOfMemoryError, match="out of memory allocating a CPU buffer of 70368744177664 bytes"):
        with torch.no_grad():
            m(x)
    m(torch.randn(3, 2, 1))  # and the process goes on


def test_deterministic_algorithms_mode_runs_and_repeats():
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(0)
        m = fusedrnn.LSTM(5, 7, 2, bidirectional=True)
        x = torch.randn(6, 3, 5, requires_grad=True)
        runs = []
        for _ in range(2):
            m.zero_grad()
            x.grad = None
            out, _ = m(x)
            out.pow(2).sum().backward()
            runs.append([out.detach().clone(), x.grad.clone(), *[p.grad.clone() for p in m.parameters()]])
        for a, b in zip(*runs):
            assert torch.equal(a, b)
    finally:
        torch.use_deterministic_algorithms(False)


def _train_with_dropout(seed):
    torch.manual_seed(seed)
    m = fusedrnn.LSTM(6, 8, 3, dropout=0.5)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(7, 4, 6)
    for _ in range(3):
        opt.zero_grad()
        out, _ = m(x)
        out.pow(2).mean().backward()
        opt.step()
    return [p.detach().clone() for p in m.parameters()]


def test_manual_seed_reproduces_training_with_dropout_exactly():
    a, b, c = _train_with_dropout(3), _train_with_dropout(3), _train_with_dropout(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))  # the seed matters: dropout is really on


DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch, torch.distributed as dist
    import fusedrnn
    from torch.nn.parallel import DistributedDataParallel as DDP
    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = fusedrnn.GRU(5, 8, 2, bidirectional=True)
            self.head = torch.nn.Linear(16, 1)
        def forward(self, x):
            return self.head(self.rnn(x)[0].mean(0))
    torch.manual_seed(0)
    net = Net()
    torch.manual_seed(1)
    X, Y = torch.randn(6, 8, 5), torch.randn(8, 1)  # 8 sequences: the global batch
    initial = [p.detach().clone() for p in net.parameters()]
    if world == 1:
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(4):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(X), Y).backward()
            opt.step()
        torch.save([initial, [p.detach() for p in net.parameters()]], out)
        sys.exit(0)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    ddp = DDP(net)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    shard = slice(rank * 8 // world, (rank + 1) * 8 // world)
    for _ in range(4):
        opt.zero_grad()
        torch.nn.functional.mse_loss(ddp(X[:, shard]), Y[shard]).backward()
        opt.step()
    if rank == 0:
        torch.save([p.detach() for p in net.parameters()], out)
    # Both ranks done before either tears the group down: a rank destroying it while its peer was
    # still at work made the peer abort ("terminate called without an active exception", torch 2.14.1).
    dist.barrier()
    dist.destroy_process_group()
""")


def test_distributed_data_parallel_over_two_processes_equals_one(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    single, multi = tmp_path / "single.pt", tmp_path / "multi.pt"
    r = subprocess.run([sys.executable, str(script), "0", "1", port, str(single)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    procs = [subprocess.Popen([sys.executable, str(script), str(k), "2", port, str(multi)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    (initial, a), b = torch.load(single), torch.load(multi)
    assert len(a) == len(b) == 2 * 2 * 4 + 2  # 2 layers x 2 directions x 4 tensors, and the head
    # Each rank's gradient over its 4 sequences, averaged by DDP's allreduce, is the gradient over
    # all 8: after 4 steps the parameters are the single process's.
    for x, y in zip(a, b):
        assert_rel(y, x, 1e-5)
    assert all(not torch.equal(x, i) for x, i in zip(a, initial))  # and training moved every tensor


def test_torchrun_trains_data_parallel_only_rank_0_reports_and_resume_works(tmp_path):
    def torchrun(*args):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "fusedrnn.train",
               "LMModel5", "--epochs", "2", *args]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def table(out):
        return [line for line in out.splitlines() if line[:1].isdigit()]

    straight = torchrun("--json", "run.json")
    assert straight.count("== summary") == 1 and "on cpu x 2 ranks" in straight  # rank 0 alone prints
    assert len(table(straight)) == 2
    torchrun("--checkpoint", "ck.pt", "--stop-after", "1")
    state = torch.load(tmp_path / "ck.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["epoch"] == 1
    resumed = torchrun("--resume", "ck.pt")
    # The same losses and accuracies, to the digit, as the run that was not interrupted (times aside).
    assert [row.split()[:4] for row in table(resumed)] == [row.split()[:4] for row in table(straight)]
    from fusedrnn import train
    from fusedrnn.models import MODELS

    with pytest.raises(ValueError, match="written by 2 rank"):
        train.fit_one_cycle(MODELS["LMModel5"], epochs=2, resume=str(tmp_path / "ck.pt"), log=lambda *_: None,
                            progress=False)
