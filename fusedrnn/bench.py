"""Side-by-side benchmark: fusedrnn against torch.nn on the same inputs and weights.

    python -m fusedrnn.bench [--models NAME ...] [--grid --batch 1,64 --hidden 64,256 ...]
                             [--mode train|infer|both] [--budget S | --full] [--out DIR] [--tag NAME]

Each case runs fusedrnn and the torch.nn module in turn, in the same process, on the same inputs
and weights; after a warm-up, each is timed over repeated runs, interleaved one run at a time, and
the median is reported, with the ratio torch / fusedrnn (above 1: fusedrnn is faster) and the number
of runs it rests on. A case stops repeating once every median is stable (moved under 1% over the
last two runs, after 5) or its time budget is spent (--budget seconds, after 3 runs); --full runs
every case 20 times whatever it costs. On the CPU the reference is what torch.nn runs itself:
oneDNN for float32 LSTM (dense, or packed with equal lengths), the native ATen loop otherwise.
"""
import argparse
import datetime
import itertools
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from . import functional as FR

NN_CLASS = {"rnn_tanh": nn.RNN, "rnn_relu": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
    # The dense models above, packed with long-tailed lengths: every cell on a PackedSequence.
    Case("imdb_rnn_packed", "rnn_tanh", 100, 256, 1, 64, 256, packed=True),
    Case("fastai_gru_packed", "gru", 100, 100, 1, 256, 72, packed=True),
    Case("fastai_lstm_packed", "lstm", 100, 100, 1, 256, 72, packed=True),
    # Larger layers: fastai's AWD-LSTM (embeddings 400, hidden 1152, bptt 72; its first layer, at
    # the language model's batch 16 and a classifier's 64), hidden 512 and 1536, and a batch-1 GRU.
    Case("awd_lstm_b16", "lstm", 400, 1152, 1, 16, 72),
    Case("awd_lstm_b64", "lstm", 400, 1152, 1, 64, 72),
    Case("lstm_h512", "lstm", 256, 512, 1, 32, 100),
    Case("lstm_h1536", "lstm", 400, 1536, 1, 16, 72),
    Case("gru_h1024_b1", "gru", 256, 1024, 1, 1, 100),
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


def time_ms(fn, device):
    """Milliseconds of one fn(): CUDA events on the GPU, a wall clock on the CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


# Seconds of quiet before each timed run of a fn in interleaved_ms's `quiet`: ONNX Runtime's own
# thread pool. After a parallel region the OpenMP workers of torch and fusedrnn spin on for several
# milliseconds (libgomp's wait policy), which costs them nothing when an OpenMP op comes next but
# takes a core from another pool's threads: on the 2-core Zen 4, gru_h1024_b1 in ORT took 17.3-17.9
# ms right after fusedrnn, 12.8 after a 5 ms sleep, 11.4 after 20 ms, and 11.3-11.4 after torch.nn
# (medians of 15). Deployed, ORT has the CPU to itself.
QUIET_S = 0.02


def interleaved_ms(fns, device, warmup, repeats, budget_s=None, min_repeats=3, settle=5, tolerance=0.01,
                   quiet=(), quiet_s=QUIET_S):
    """Median milliseconds of each of fns (name -> callable) and the number of runs each rests on.
    After a warm-up (the first round always; more while they take under a quarter of the budget),
    the runs are interleaved one by one (round r runs every fn once, in an order that alternates
    between rounds), so a machine whose speed drifts over seconds, as shared ones do, slows all of
    them alike. Up to `repeats` rounds; with a budget, it stops after `settle` rounds or more once
    no median moved by more than `tolerance` over the last two rounds, or after `min_repeats` once
    the rounds took budget_s seconds. Each timed run of a fn named in `quiet` starts after quiet_s
    seconds of sleep (QUIET_S), which the budget does not count."""
    names = list(fns)
    start = time.perf_counter()
    for w in range(warmup):
        for name in names:
            fns[name]()
        if budget_s is not None and time.perf_counter() - start > 0.25 * budget_s:
            break
    times = {name: [] for name in names}
    history = []
    start = time.perf_counter()
    slept = 0.0
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            if name in quiet:
                time.sleep(quiet_s)
                slept += quiet_s
            times[name].append(time_ms(fns[name], device))
        medians = {name: statistics.median(t) for name, t in times.items()}
        history.append(medians)
        if budget_s is None:
            continue
        rounds = r + 1
        if rounds >= settle and all(abs(medians[n] - old[n]) <= tolerance * old[n]
                                    for old in history[-3:-1] for n in names):
            break
        if rounds >= min_repeats and time.perf_counter() - start - slept >= budget_s:
            break
    return history[-1], len(history)


def make_cell_loop(case, module):
    """The seeds' second reference: a Python loop over torch.nn cells sharing `module`'s weights
    (layers, directions, no dropout). Dense input only."""
    cell_cls = {"rnn_tanh": nn.RNNCell, "rnn_relu": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[case.cell]
    dirs = 2 if case.bidirectional else 1
    cells = []
    for layer in range(case.num_layers):
        for d in range(dirs):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            w_ih = getattr(module, "weight_ih" + suffix)
            kwargs = {"nonlinearity": "relu"} if case.cell == "rnn_relu" else {}
            c = cell_cls(w_ih.shape[1], case.hidden_size, **kwargs).to(w_ih.device, w_ih.dtype)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                setattr(c, name, getattr(module, name + suffix))
            cells.append(c)
    lstm = case.cell == "lstm"

    def forward(x):
        layer_input = x
        finals = []
        for layer in range(case.num_layers):
            outs = []
            for d in range(dirs):
                cell = cells[layer * dirs + d]
                state = None
                steps = range(x.size(0) - 1, -1, -1) if d else range(x.size(0))
                seq = [None] * x.size(0)
                for t in steps:
                    state = cell(layer_input[t], state)
                    seq[t] = state[0] if lstm else state
                outs.append(torch.stack(seq))
                finals.append(state[0] if lstm else state)
            layer_input = outs[0] if dirs == 1 else torch.cat(outs, -1)
        return layer_input, torch.stack(finals)

    return forward


def ort_available():
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def ort_reference(case, module, x):
    """ONNX Runtime's run of torch.nn's `module` on `x`, as a user deploying it gets it: the module
    exported by torch.onnx.export (dynamo), an InferenceSession on the CPU with torch's thread count
    and spinning off (ONNX Runtime's threads spin after each run by default, which on a small
    machine steals the CPU from whatever runs next). Returns a callable running it once, or None
    where ONNX Runtime does not apply (packed input, projections)."""
    if case.packed:
        return None
    import tempfile
    import warnings

    import onnxruntime as ort

    class Outputs(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, inp):
            out, state = self.m(inp)
            return out, (state[0] if isinstance(state, tuple) else state)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(Outputs(module).eval(), (x.detach(),), dynamo=True, verbose=False)
    path = os.path.join(tempfile.mkdtemp(prefix="fusedrnn-ort-"), f"{case.name}.onnx")
    program.save(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.detach().numpy()}
    expected = Outputs(module)(x)[0].detach().numpy()
    got = session.run(None, feed)[0]
    if not (abs(got - expected).max() <= 1e-4 * max(1.0, abs(expected).max())):
        raise RuntimeError(f"ONNX Runtime's {case.name} does not compute torch.nn's output")
    return lambda: session.run(None, feed)


def make_steps(case, mode, device, dtype=torch.float32, seed=0, cell_loop=True, ort=False):
    """One callable per implementation ('torch', 'fusedrnn', and 'cell_loop' for dense input, 'ort'
    with ort=True where ONNX Runtime applies: inference of a dense case on the CPU), each running one
    forward (mode 'infer', no grad) or forward plus backward (mode 'train') on the same inputs and
    weights. Also returns the lengths of a packed case (else None)."""
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

    def timed(forward):
        def step():
            with torch.set_grad_enabled(train):
                out, state = forward(make_input())
                if train:
                    loss(out, state).backward()
        return step

    def fused_forward(inp):
        return FR.rnn(case.cell, inp, None, weights, num_layers=case.num_layers, bidirectional=case.bidirectional)

    steps = {"torch": timed(module), "fusedrnn": timed(fused_forward)}
    if cell_loop and not case.packed:
        loop = make_cell_loop(case, module)

        def loop_forward(inp):
            out, h = loop(inp)
            return out, ((h, h) if case.cell == "lstm" else h)

        steps["cell_loop"] = timed(loop_forward)
    if ort and mode == "infer" and device.type == "cpu" and dtype == torch.float32:
        run_ort = ort_reference(case, module, x)
        if run_ort is not None:
            steps["ort"] = run_ort
    return steps, lengths


def run_case(case, mode, device, dtype=torch.float32, warmup=3, repeats=10, seed=0, cell_loop=True, budget_s=None,
             ort=False):
    steps, lengths = make_steps(case, mode, torch.device(device), dtype, seed, cell_loop, ort)
    ms, runs = interleaved_ms(steps, device, warmup, repeats, budget_s, quiet=("ort",))
    row = {
        **asdict(case), "mode": mode, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "reference": reference_backend(case, device), "runs": runs, "torch_ms": ms["torch"], "fusedrnn_ms": ms["fusedrnn"],
        "ratio": ms["torch"] / ms["fusedrnn"], "cell_loop_ms": ms.get("cell_loop"),
        "cell_loop_ratio": ms["cell_loop"] / ms["fusedrnn"] if "cell_loop" in ms else None,
        "ort_ms": ms.get("ort"), "ort_ratio": ms["ort"] / ms["fusedrnn"] if "ort" in ms else None,
    }
    if lengths is not None:
        row["lengths"] = {"min": int(lengths.min()), "median": int(lengths.median()), "max": int(lengths.max())}
    if torch.device(device).type == "cuda":
        row.update(model_columns(case, mode, row["dtype"]))
    return row


def model_columns(case, mode, dtype):
    """The performance model's prediction (fusedrnn.gpu_model) of the recurrent loops of a CUDA case,
    and the path the CUDA backend takes for it (FUSEDRNN_CUDA_PATH, or the model's automatic choice)."""
    from . import gpu_model

    if dtype not in gpu_model.ELEM:
        return {"cuda_path": "standard", "model_loop_ms": None}
    forced = os.environ.get("FUSEDRNN_CUDA_PATH") or None
    auto = gpu_model.plan(case.cell, case.hidden_size, case.batch, dtype)["auto_path"]["forward"]
    return {"cuda_path": forced or auto,
            "model_loop_ms": gpu_model.predicted_call_ms(case.cell, case.hidden_size, case.batch, case.seq_len,
                                                         case.num_layers, case.bidirectional, dtype,
                                                         training=mode == "train")}


def grid_cases(cells, batches, inputs, hiddens, seq_lens, layouts, num_layers=1):
    for cell, b, i, h, t, layout in itertools.product(cells, batches, inputs, hiddens, seq_lens, layouts):
        packed = layout == "packed"
        yield Case(f"{cell}_b{b}_i{i}_h{h}_t{t}{'_packed' if packed else ''}", cell, i, h, num_layers, b, t,
                   packed=packed)


def plot(rows, path, title):
    """A PNG of the speed-ups (needs matplotlib): one group of bars per case, inference (against
    torch.nn, and against ONNX Runtime where it ran) and training side by side, a line at 1x, a log
    axis when the ratios span more than 10x."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(dict.fromkeys(r["name"] for r in rows))
    by_key = {(r["name"], r["mode"]): r["ratio"] for r in rows}
    by_key.update({(r["name"], "ort"): r["ort_ratio"] for r in rows if r.get("ort_ratio") is not None})
    modes = [m for m in ("infer", "ort", "train") if any(k[1] == m for k in by_key)]
    ratios = list(by_key.values())
    log = max(ratios) / min(ratios) > 10
    height = 0.8 / len(modes)
    colors = {"infer": "tab:blue", "ort": "tab:green", "train": "tab:orange"}
    labels = {"infer": "inference", "ort": "inference vs ONNX Runtime", "train": "training"}
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(names) * max(1, len(modes) / 1.5) + 1.6))
    for k, mode in enumerate(modes):
        ys = [i + (k - (len(modes) - 1) / 2) * height for i in range(len(names))]
        vals = [by_key.get((n, mode)) for n in names]
        shown = [(y, v) for y, v in zip(ys, vals) if v is not None]
        ax.barh([y for y, _ in shown], [v for _, v in shown], height=height * 0.95, color=colors[mode],
                label=labels[mode])
        for y, v in shown:
            ax.text(v, y, f" {v:.2f}x", va="center", fontsize=7)
    ax.axvline(1.0, color="black", linewidth=1)
    if log:
        ax.set_xscale("log")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up: reference time / fusedrnn time (torch.nn; green: ONNX Runtime)" +
                  (" (log scale)" if log else "") + "; 1x marked")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device):
    env = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
        env["fusedrnn_matmul_tf32"] = torch.backends.cuda.matmul.allow_tf32
        # What fusedrnn's float32 products run on: the persistent kernels' step products on FFMA
        # (never TF32); the standard path's and the input / weight GEMMs on cuBLAS, TF32 when
        # torch.backends.cuda.matmul.allow_tf32 is on. half / bfloat16 step products on tensor cores.
        env["fusedrnn_float32_step_products"] = ("FFMA (persistent path); cuBLAS " +
                                                 ("TF32" if torch.backends.cuda.matmul.allow_tf32 else "IEEE float32") +
                                                 " (standard path and the whole-sequence GEMMs)")
    else:
        from . import _C
        env["cpu"] = cpu_name()
        blas = "direct BLAS" if _C.direct_blas() else "at::mm"
        # float32 products of layer calls of 256 rows or more (the step products where they run one
        # per thread, input projection, input and weight gradients) go to the packed kernels; the
        # rest to the BLAS.
        isa = _C.packed_isa().upper().replace("AVX512", "AVX-512")
        env["fusedrnn_step_gemm"] = f"packed {isa} kernel, else {blas}" if _C.packed_gemm() else blas
    return env


HEADER = (f"{'case':<26} {'cell':<8} {'mode':<6} {'reference':<17} {'runs':>4} {'torch ms':>10} {'fusedrnn ms':>12} "
          f"{'ratio':>7} {'cell loop ms':>13} {'ratio':>7}")


MODEL_HEADER = f" {'path':<10} {'model ms':>9}"
ORT_HEADER = f" {'ORT ms':>9} {'ratio':>7}"


def format_row(r):
    loop = (f"{r['cell_loop_ms']:>13.3f} {r['cell_loop_ratio']:>6.2f}x" if r.get("cell_loop_ms") is not None
            else f"{'-':>13} {'-':>7}")
    line = (f"{r['name']:<26} {r['cell']:<8} {r['mode']:<6} {r['reference']:<17} {r['runs']:>4} {r['torch_ms']:>10.3f} "
            f"{r['fusedrnn_ms']:>12.3f} {r['ratio']:>6.2f}x {loop}")
    if r.get("ort_column"):  # ONNX Runtime: its time and ORT ms / fusedrnn ms
        line += (f" {r['ort_ms']:>9.3f} {r['ort_ratio']:>6.2f}x" if r.get("ort_ms") is not None
                 else f" {'-':>9} {'-':>7}")
    if "cuda_path" in r:  # CUDA: the path taken and the model's time for the recurrent loops (the GEMMs not in it)
        model = f"{r['model_loop_ms']:>9.3f}" if r.get("model_loop_ms") is not None else f"{'-':>9}"
        line += f" {r['cuda_path']:<10} {model}"
    return line


class Progress:
    """The case being timed and the time left, on stderr: a tqdm bar where tqdm is installed, else
    a line per case."""

    def __init__(self, total):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, file=sys.stderr, unit="case", leave=False, dynamic_ncols=True)

    def begin(self, label):
        if self.bar is not None:
            self.bar.set_description(label)
            return
        left = ""
        if self.done:
            rest = (time.perf_counter() - self.start) / self.done * (self.total - self.done)
            left = f", about {rest:.0f} s left"
        print(f"[{self.done + 1}/{self.total}] timing {label}{left}", file=sys.stderr, flush=True)

    def end(self):
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def int_list(text):
    return [int(v) for v in text.split(",")]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fusedrnn.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None,
                        help="documented model shapes to run (default: all; --models with no name: none)")
    parser.add_argument("--grid", action="store_true", help="also run the grid given by the flags below")
    parser.add_argument("--cells", default="rnn_tanh,lstm,gru", help="grid cells (comma-separated)")
    parser.add_argument("--batch", type=int_list, default=[1, 64, 256], help="grid batch sizes, e.g. 1,16,256")
    parser.add_argument("--input", type=int_list, default=[128], help="grid input sizes (64-512)")
    parser.add_argument("--hidden", type=int_list, default=[64, 256, 1024], help="grid hidden sizes (32-1024)")
    parser.add_argument("--seq-len", type=int_list, default=[100], help="grid sequence lengths (16-1000)")
    parser.add_argument("--layout", default="dense", help="grid layouts: dense, packed or dense,packed")
    parser.add_argument("--mode", choices=["train", "infer", "both"], default="both")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--repeats", type=int, default=20, help="most runs per case (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="most warm-up runs per case (default 3)")
    parser.add_argument("--budget", type=float, default=2.5,
                        help="seconds of timed runs per case and mode before it stops repeating (default 2.5)")
    parser.add_argument("--full", action="store_true", help="no budget: every case --repeats times")
    parser.add_argument("--no-cell-loop", action="store_true", help="skip the Python loop of torch.nn cells")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                        help="storage dtype of every case (default float32; ONNX Runtime runs float32 only)")
    parser.add_argument("--reference", default=None,
                        help="comma-separated references: torch (always) and ort (ONNX Runtime, CPU inference of "
                             "dense cases; default: when onnxruntime and onnxscript are installed)")
    parser.add_argument("--tf32", choices=["on", "off", "default"], default="default",
                        help="CUDA: torch's TF32 flags (cuDNN's and cuBLAS's) on or off; default: as torch sets them")
    parser.add_argument("--out", default="fusedrnn-bench", help="folder for the JSON results and the PNG plot")
    parser.add_argument("--tag", default=None, help="file name stem (default: DEVICE-DATE-TIME)")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = {c.name for c in MODELS}
    for n in args.models or []:
        if n not in names:
            parser.error(f"unknown model {n!r}; choose from {', '.join(sorted(names))}")
    cases = [c for c in MODELS if args.models is None or c.name in args.models]
    if args.grid:
        cells = args.cells.split(",")
        for c in cells:
            if c not in NN_CLASS:
                parser.error(f"unknown cell {c!r}; choose from {', '.join(NN_CLASS)}")
        layouts = args.layout.split(",")
        if any(lay not in ("dense", "packed") for lay in layouts):
            parser.error("--layout takes dense, packed or dense,packed")
        cases += list(grid_cases(cells, args.batch, args.input, args.hidden, args.seq_len, layouts))
    if not cases:
        parser.error("nothing to run: name --models or add --grid")
    modes = ["infer", "train"] if args.mode == "both" else [args.mode]
    references = set(args.reference.split(",")) if args.reference else {"torch"} | ({"ort"} if ort_available() else set())
    if references - {"torch", "ort"}:
        parser.error(f"unknown reference(s) {', '.join(sorted(references - {'torch', 'ort'}))}; choose torch, ort")
    if "ort" in references and not ort_available():
        parser.error("--reference ort needs onnxruntime and onnxscript (pip install onnxruntime onnxscript onnx)")
    use_ort = "ort" in references and device.type == "cpu"
    if args.tf32 != "default":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
    dtype = DTYPES[args.dtype]
    env = environment(device)
    env["dtype"] = args.dtype
    if use_ort:
        env["onnxruntime"] = __import__("onnxruntime").__version__
    print("environment:", json.dumps(env))
    print("ratio = torch ms / fusedrnn ms (above 1: fusedrnn is faster); cell loop: torch.nn cells stepped "
          "from Python, as the seed notebooks write it")
    header = HEADER + (ORT_HEADER if use_ort else "") + (MODEL_HEADER if device.type == "cuda" else "")
    if use_ort:
        print("ORT: ONNX Runtime " + __import__("onnxruntime").__version__ + " on torch.onnx.export's graph of the "
              "torch.nn module, same threads, spinning off; ratio = ORT ms / fusedrnn ms (inference, dense)")
    print(header)
    print("-" * len(header))
    rows = []
    budget = None if args.full else args.budget
    progress = Progress(len(cases) * len(modes))
    start = time.perf_counter()
    for case in cases:
        for mode in modes:
            progress.begin(f"{case.name} {mode}")
            rows.append(run_case(case, mode, device, dtype=dtype, warmup=args.warmup, repeats=args.repeats,
                                 cell_loop=not args.no_cell_loop, budget_s=budget, ort=use_ort))
            rows[-1]["ort_column"] = use_ort
            progress.end()
            print(format_row(rows[-1]), flush=True)
    progress.close()
    print(f"{len(rows)} rows in {time.perf_counter() - start:.0f} s"
          + (f" (budget {budget:g} s a row; --full for 20 runs each)" if budget is not None else ""))

    os.makedirs(args.out, exist_ok=True)
    tag = args.tag or f"{device.type}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    json_path = os.path.join(args.out, tag + ".json")
    with open(json_path, "w") as f:
        json.dump({"environment": env, "results": rows}, f, indent=2)
    print(f"results: {json_path}")
    png_path = os.path.join(args.out, tag + ".png")
    kinds = ", ".join(sorted({r["reference"] for r in rows}))
    ort_note = " and ONNX Runtime" if any(r.get("ort_ratio") is not None for r in rows) else ""
    title = (f"fusedrnn vs torch.nn ({kinds}){ort_note} on {env.get('gpu') or env.get('cpu')} ({env['threads']} threads), "
             f"torch {env['torch']}")
    if plot(rows, png_path, title):
        print(f"plot: {png_path}")
    else:
        print("plot: skipped (pip install matplotlib to get one)")
    return rows


if __name__ == "__main__":
    main()
