"""Side-by-side benchmark: fusedrnn against torch.nn on the same inputs and weights.

    python -m fusedrnn.bench [--models NAME ...] [--mode train|infer|both] [--json PATH]

Each case runs fusedrnn and the torch.nn module in turn, in the same process, on the same
inputs and weights; after a warm-up, each is timed over repeated runs and the median is
reported, with the ratio torch / fusedrnn (above 1: fusedrnn is faster). On the CPU the reference is
what torch.nn runs itself: oneDNN for float32 LSTM (dense, or packed with equal lengths), the
native ATen loop otherwise.
"""
import argparse
import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from . import functional as FR

NN_CLASS = {"rnn_tanh": nn.RNN, "rnn_relu": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@dataclass
class Case:
    name: str
    cell: str
    input_size: int
    hidden_size: int
    num_layers: int
    batch: int
    seq_len: int
    bidirectional: bool = False
    packed: bool = False


# The documented models (shared/MODELS.md) at the shapes they train with.
MODELS = [
    Case("human_numbers_rnn", "rnn_tanh", 64, 64, 2, 64, 16),         # LMModel5
    Case("human_numbers_lstm", "lstm", 64, 64, 2, 64, 16),            # LMModel6/7
    Case("agnews_rnn", "rnn_tanh", 64, 32, 1, 16, 64),                # RNNClassifier
    Case("agnews_lstm", "lstm", 64, 32, 1, 16, 64),                   # LSTMClassifier
    Case("agnews_lstm_packed", "lstm", 64, 32, 1, 16, 64, packed=True),  # LSTMPackClassifier
    Case("imdb_rnn", "rnn_tanh", 100, 256, 1, 64, 256),               # Vanilla_RNN
    Case("imdb_gru_packed", "gru", 100, 256, 2, 64, 256, bidirectional=True, packed=True),
    Case("fastai_rnn", "rnn_tanh", 100, 100, 1, 256, 72),             # TextClassifier variants
    Case("fastai_lstm", "lstm", 100, 100, 1, 256, 72),
    Case("fastai_gru", "gru", 100, 100, 1, 256, 72),
    Case("char_lstm", "lstm", 100, 128, 4, 32, 100),                  # 4 x 128 character model
]


def long_tailed_lengths(batch, max_len, gen):
    """Lengths with a long right tail (log-normal, like review lengths), capped at max_len."""
    lengths = torch.empty(batch).log_normal_(0, 0.6, generator=gen) * (max_len / 3)
    lengths = lengths.clamp(1, max_len).long()
    lengths[0] = max_len
    return lengths


def reference_backend(case, device):
    if device.type == "cuda":
        return f"cuDNN TF32={'on' if torch.backends.cudnn.allow_tf32 else 'off'}"
    if case.cell == "lstm" and torch.backends.mkldnn.is_available() and not case.packed:
        return "oneDNN"
    return "native loop"


def median_ms(fn, device, warmup, repeats):
    """Median milliseconds of fn() after a warm-up: CUDA events on the GPU, a wall clock on the CPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run_case(case, mode, device, dtype=torch.float32, warmup=3, repeats=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    kwargs = {"nonlinearity": "relu"} if case.cell == "rnn_relu" else {}
    module = NN_CLASS[case.cell](case.input_size, case.hidden_size, case.num_layers,
                                 bidirectional=case.bidirectional, **kwargs).to(device, dtype)
    x = torch.randn(case.seq_len, case.batch, case.input_size, generator=gen).to(device, dtype)
    lengths = long_tailed_lengths(case.batch, case.seq_len, gen) if case.packed else None
    train = mode == "train"
    x.requires_grad_(train)
    module.requires_grad_(train)
    weights = module._flat_weights

    def make_input():
        return pack_padded_sequence(x, lengths, enforce_sorted=False) if case.packed else x

    def loss(out, state):
        data = out.data if case.packed else out
        h = state[0] if case.cell == "lstm" else state
        return data.sum() + h.sum()

    def torch_step():
        with torch.set_grad_enabled(train):
            out, state = module(make_input())
            if train:
                loss(out, state).backward()

    def fused_step():
        with torch.set_grad_enabled(train):
            out, state = FR.rnn(case.cell, make_input(), None, weights, num_layers=case.num_layers,
                                bidirectional=case.bidirectional)
            if train:
                loss(out, state).backward()

    ms = {}
    # Interleave the two, twice, so drifting clocks or caches favour neither.
    for name, fn in [("torch", torch_step), ("fusedrnn", fused_step)] * 2:
        t = median_ms(fn, device, warmup, repeats)
        ms[name] = min(t, ms.get(name, float("inf")))
    return {
        **asdict(case), "mode": mode, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "reference": reference_backend(case, device), "torch_ms": ms["torch"], "fusedrnn_ms": ms["fusedrnn"],
        "ratio": ms["torch"] / ms["fusedrnn"],
    }


def environment(device):
    env = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
        env["fusedrnn_matmul_tf32"] = torch.backends.cuda.matmul.allow_tf32
    else:
        from . import _C
        env["cpu"] = platform.processor() or platform.machine()
        env["fusedrnn_step_gemm"] = "direct BLAS" if _C.direct_blas() else "at::mm"
    return env


HEADER = f"{'case':<22} {'cell':<8} {'mode':<6} {'reference':<18} {'torch ms':>10} {'fusedrnn ms':>12} {'ratio':>7}"


def format_row(r):
    return (f"{r['name']:<22} {r['cell']:<8} {r['mode']:<6} {r['reference']:<18} {r['torch_ms']:>10.3f} "
            f"{r['fusedrnn_ms']:>12.3f} {r['ratio']:>6.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fusedrnn.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None, help="documented model shapes to run (default: all)")
    parser.add_argument("--mode", choices=["train", "infer", "both"], default="both")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = {c.name for c in MODELS}
    for n in args.models or []:
        if n not in names:
            parser.error(f"unknown model {n!r}; choose from {', '.join(sorted(names))}")
    cases = [c for c in MODELS if not args.models or c.name in args.models]
    modes = ["infer", "train"] if args.mode == "both" else [args.mode]
    env = environment(device)
    print("environment:", json.dumps(env))
    print("ratio = torch ms / fusedrnn ms (above 1: fusedrnn is faster)")
    print(HEADER)
    print("-" * len(HEADER))
    rows = []
    for case in cases:
        for mode in modes:
            rows.append(run_case(case, mode, device, warmup=args.warmup, repeats=args.repeats))
            print(format_row(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": rows}, f, indent=2)
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
