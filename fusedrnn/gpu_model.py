"""A performance model of the CUDA backend's persistent kernels (csrc/cuda/persistent_kernel.cuh).

    python -m fusedrnn.gpu_model [--ptxas FILE] [--dtype float32|bfloat16|float16] [--markdown]

For a layer shape it lays the kernels out as their host code does (plan(): U units a block, one
block per multiprocessor at most, the shared memory of SmemLayout) on an H100/H200 (132 SMs, 227 KB
of shared memory a block) and predicts the time of one step, forward and backward, from a few rates
stated below. It is a model, not a measurement: scripts/gpu_run.sh prints it beside the times
measured on a GPU, and docs/gpu-model.md is its output for the documented shapes. Registers come
from a ptxas record (scripts/ptxas_report.py --out FILE) where one is given.
"""
import argparse
import re
from dataclasses import dataclass

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
ELEM = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass
class Device:
    name: str = "H100/H200 SXM"
    sms: int = 132
    smem_optin: int = 227 * 1024
    clock_ghz: float = 1.98
    l2_bytes_per_clock_per_sm: float = 64.0  # L2 -> SM fill rate (one 64-byte sector a clock)
    smem_bytes_per_clock: float = 128.0      # 32 banks x 4 bytes
    l2_latency_us: float = 0.25              # one dependent round trip to L2 (about 500 clocks)
    grid_sync_us: float = 1.0                # cooperative grid.sync() over 132 blocks (GPU.md: 0.5-1.5 us)
    mma_chain_clocks: float = 35.0           # load two tiles + one m16n16k16 mma, dependent, per warp


H100 = Device()
THREADS = 256
WARPS = THREADS // 32
MAX_CHUNK_ROWS = 32
# The FFMA products read two shared-memory wavefronts (the slice's row, a broadcast of h) a warp
# instruction of 32 FMA: 16 a clock a multiprocessor.
FFMA_PER_CLOCK = 16
# The host code's automatic choice (persistent_kernel.cuh, kAutoMaxProductClocks): the persistent path
# where one block's step products take at most this many clocks.
AUTO_MAX_PRODUCT_CLOCKS = 20000
# GPU.md's floor, H100/H200 at hidden 1024, batch 16: about 1-1.5 us a step forward, 3 us
# forward and backward (broadcasting h and one inter-block barrier set it, not arithmetic).
FLOOR_FORWARD_US = 1.0
FLOOR_TRAINING_US = 3.0


def round_up(v, m):
    return (v + m - 1) // m * m


def align128(v):
    return round_up(v, 128)


def forward_smem(G, U, Hr, R, dtype):
    """Bytes of the forward kernel's shared memory (SmemLayout, forward_layout)."""
    GU = G * U
    if dtype == "float32":
        w = align128(GU * (Hr + 1) * 4)
        h = align128(R * Hr * 4)
        return w + h + R * GU * 4
    ld = round_up(Hr, 16) + 8
    w = align128(round_up(GU, 16) * ld * 2)
    h = align128(round_up(R, 16) * ld * 2)
    return w + h + round_up(R, 16) * (round_up(GU, 16) + 4) * 4


def backward_smem(G, H, U, dtype):
    """Bytes of the backward kernel's shared memory (backward_layout)."""
    GH = G * H
    if dtype == "float32":
        return U * (GH + 1) * 4
    return align128(round_up(U, 16) * (round_up(GH, 16) + 8) * 2) + align128(WARPS * 256 * 2) + WARPS * 256 * 4


def plan(cell, H, B, dtype, device=H100):
    """The persistent kernels' layout for a layer of hidden H at batch B: units a block, blocks,
    forward rows a chunk, shared memory of each pass; fits=False (and why) where the host code falls
    back to the standard path."""
    G = GATES[cell]
    U = -(-H // device.sms)
    blocks = -(-H // U)
    R = min(B, MAX_CHUNK_ROWS)
    while forward_smem(G, U, H, R, dtype) > device.smem_optin and R > 1:
        R -= 1
    fwd, bwd = forward_smem(G, U, H, R, dtype), backward_smem(G, H, U, dtype)
    why = None
    if fwd > device.smem_optin or bwd > device.smem_optin:
        why = f"a slice of {U} units needs {max(fwd, bwd)} bytes of shared memory, more than {device.smem_optin}"
    clocks = {d: product_clocks(G, U, H, B, dtype, d == "forward") for d in ("forward", "backward")}
    auto = {d: "persistent" if why is None and clocks[d] <= AUTO_MAX_PRODUCT_CLOCKS else "standard" for d in clocks}
    return dict(G=G, U=U, blocks=blocks, R=R, forward_smem=fwd, backward_smem=bwd, fits=why is None, why=why,
                product_clocks=clocks, auto_path=auto)


def product_clocks(G, U, H, B, dtype, forward):
    """persistent_kernel.cuh's product_clocks: one block's step products in clocks."""
    if dtype == "float32":
        return B * G * U * H // FFMA_PER_CLOCK
    tiles = lambda v: -(-v // 16)  # noqa: E731
    return (tiles(B) * tiles(G * U) * tiles(H) if forward else tiles(B) * tiles(U) * tiles(G * H)) * 8


def step_times(cell, H, B, dtype, device=H100):
    """Predicted microseconds of one step of one layer and direction, forward and backward (full
    batch: a packed batch's steps have at most B rows), with the terms they add up from."""
    p = plan(cell, H, B, dtype, device)
    G, U, R = p["G"], p["U"], p["R"]
    e = ELEM[dtype]
    f = device.clock_ghz * 1e3  # clocks a microsecond
    chunks = -(-B // R)
    # Forward: h_{t-1} (B x H) from L2 into every block; the slice's products; the cell.
    h_bytes = B * H * e
    h_us = h_bytes / device.l2_bytes_per_clock_per_sm / f
    fmas = B * G * U * H
    if dtype == "float32":  # a dot product a thread: the slice's row and h from shared memory, 16 FMA a clock
        prod_us = fmas / FFMA_PER_CLOCK / f
    else:  # wmma tiles: 1 KB of shared memory a mma, and each warp's chain over k
        tiles = -(-min(B, R) // 16) * -(-(G * U) // 16)
        mmas = chunks * tiles * -(-H // 16)
        prod_us = max(mmas * 1024 / device.smem_bytes_per_clock,
                      chunks * -(-tiles // WARPS) * -(-H // 16) * device.mma_chain_clocks) / f
    cell_us = B * U * G * 4 * 3 / device.l2_bytes_per_clock_per_sm / f  # xw, reserve, out: a few values a unit
    fwd = device.grid_sync_us + 2 * device.l2_latency_us + h_us + prod_us + cell_us
    # Backward: the gate gradients (elementwise), a barrier, then every block reads all of this
    # step's dG (B x G H) for dh_prev = dG @ W_hh[:, slice].
    dg_bytes = B * G * H * e
    dg_us = dg_bytes / device.l2_bytes_per_clock_per_sm / f
    bfmas = B * U * G * H
    if dtype == "float32":
        bprod_us = bfmas / FFMA_PER_CLOCK / f
    else:
        tiles = -(-B // 16) * -(-U // 16)
        bprod_us = max(tiles * -(-(G * H) // 16) * 1024 / device.smem_bytes_per_clock,
                       -(-tiles // WARPS) * -(-(G * H) // 16) * device.mma_chain_clocks) / f
    bwd = device.grid_sync_us + 3 * device.l2_latency_us + dg_us + bprod_us + cell_us
    return dict(p, h_bytes=h_bytes, dg_bytes=dg_bytes, w_slice_bytes=G * U * H * (4 if dtype == "float32" else e),
                forward_us=fwd, backward_us=bwd, training_us=fwd + bwd,
                terms=dict(h_us=h_us, prod_us=prod_us, dg_us=dg_us, bprod_us=bprod_us))


def read_ptxas(path):
    """{('forward'|'backward', dtype): registers} from a scripts/ptxas_report.py record."""
    names = {"float": "float32", "c10::BFloat16": "bfloat16", "c10::Half": "float16"}
    regs = {}
    with open(path) as fh:
        for line in fh:
            m = re.match(r"persistent::(forward|backward)_kernel<([\w:]+), float>\s+sm_\d+\s+(\d+)", line)
            if m and m.group(2) in names:
                regs[(m.group(1), names[m.group(2)])] = int(m.group(3))
    return regs


def predicted_call_ms(cell, H, B, T, num_layers=1, bidirectional=False, dtype="float32", training=False):
    """The recurrent loops of a whole call (the directions one after the other, as they run today),
    in milliseconds; the input projections and weight gradients (cuBLAS GEMMs) are not in it."""
    t = step_times(cell, H, B, dtype)
    per_step = t["training_us"] if training else t["forward_us"]
    return per_step * T * num_layers * (2 if bidirectional else 1) / 1e3


def shapes():
    """The documented models' layers (fusedrnn.bench.MODELS) and hidden 256 / 1024 at batch 1, 16, 64."""
    from .bench import MODELS
    rows = [(c.name, c.cell, c.hidden_size, c.batch, c.seq_len, c.num_layers, c.bidirectional, c.packed) for c in MODELS]
    for cell in ("lstm", "gru"):
        for H in (256, 1024):
            for B in (1, 16, 64):
                rows.append((f"{cell}_h{H}_b{B}", cell, H, B, 100, 1, False, False))
    return rows


def table(dtype="float32", ptxas=None, markdown=False):
    regs = read_ptxas(ptxas) if ptxas else {}
    head = ["shape", "cell", "H", "B", "U", "blocks", "W_hh/block KB", "smem fwd/bwd KB", "regs fwd/bwd",
            "h read/step KB", "dG read/step KB", "grid barriers/step fwd/bwd", "fwd us/step", "fwd+bwd us/step", "floor fwd / fwd+bwd",
            "unset FUSEDRNN_CUDA_PATH picks fwd/bwd"]
    out = []
    for name, cell, H, B, T, L, bi, packed in shapes():
        t = step_times(cell, H, B, dtype)
        r = f"{regs.get(('forward', dtype), '-')}/{regs.get(('backward', dtype), '-')}"
        fits = "" if t["fits"] else " (standard path)"
        out.append([name + (" (packed)" if packed else ""), cell, str(H), str(B), str(t["U"]), str(t["blocks"]),
                    f"{t['w_slice_bytes'] / 1024:.1f}", f"{t['forward_smem'] / 1024:.1f}/{t['backward_smem'] / 1024:.1f}{fits}",
                    r, f"{t['h_bytes'] / 1024:.1f}", f"{t['dg_bytes'] / 1024:.1f}", "1/1",
                    f"{t['forward_us']:.2f}", f"{t['training_us']:.2f}",
                    f"{FLOOR_FORWARD_US:.1f} / {FLOOR_TRAINING_US:.1f}",
                    f"{t['auto_path']['forward']}/{t['auto_path']['backward']}"])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in out]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *out)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in [head, *out])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fusedrnn.gpu_model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", choices=sorted(ELEM), default=None, help="one dtype (default: all three)")
    parser.add_argument("--ptxas", help="a scripts/ptxas_report.py record, for the registers column")
    parser.add_argument("--markdown", action="store_true", help="markdown tables (docs/gpu-model.md)")
    args = parser.parse_args(argv)
    for dtype in [args.dtype] if args.dtype else ["float32", "bfloat16", "float16"]:
        print(f"\n{dtype} on {H100.name} ({H100.sms} SMs, {H100.smem_optin // 1024} KB shared memory a block, "
              f"{H100.clock_ghz} GHz); per layer and direction\n")
        print(table(dtype, args.ptxas, args.markdown))


if __name__ == "__main__":
    main()
