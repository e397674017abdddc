"""A small forward and backward of every cell on the GPU, on both CUDA paths, dense and packed, both
directions, float32 and bfloat16, checked against torch.nn in float64 on the CPU. scripts/gpu_run.sh
runs it under compute-sanitizer (memcheck, racecheck); it prints one line a case and exits 1 on a
mismatch. --emulated runs the same on the emulated CUDA backend (CPU tensors), as the tests do."""
import os
import sys

import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn

CLASSES = {"rnn_tanh": fusedrnn.RNN, "rnn_relu": fusedrnn.RNN, "lstm": fusedrnn.LSTM, "gru": fusedrnn.GRU}
NN = {"rnn_tanh": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2}


def rel(a, b):
    return ((a.double().cpu() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def case(cell, path, packed, dtype, device, T=7, B=5, I=6, H=37):
    os.environ["FUSEDRNN_CUDA_PATH"] = path
    kwargs = {"nonlinearity": "relu"} if cell == "rnn_relu" else {}
    torch.manual_seed(0)
    ref = NN[cell](I, H, 1, bidirectional=True, **kwargs).double()
    m = CLASSES[cell](I, H, 1, bidirectional=True, **kwargs)
    m.load_state_dict(ref.state_dict())
    m = m.to(device, dtype)
    x = torch.randn(T, B, I, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5, 1, 7])
    xg = x.to(device, dtype).requires_grad_()
    xr = x.clone().requires_grad_()
    out = m(pack_padded_sequence(xg, lengths, enforce_sorted=False) if packed else xg)[0]
    exp = ref(pack_padded_sequence(xr, lengths, enforce_sorted=False) if packed else xr)[0]
    out, exp = (out.data, exp.data) if packed else (out, exp)
    out.float().sum().backward()
    exp.sum().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    errs = [rel(out, exp), rel(xg.grad, xr.grad), rel(m.weight_hh_l0.grad, ref.weight_hh_l0.grad)]
    ok = max(errs) <= TOLERANCE[dtype]
    print(f"{cell:<8} {path:<10} {'packed' if packed else 'dense':<6} {str(dtype):<15} "
          f"errors {max(errs):.2e} {'ok' if ok else 'MISMATCH'}", flush=True)
    return ok


def main():
    args = sys.argv[1:]
    emulated = "--emulated" in args
    cells = [a for a in args if a != "--emulated"] or list(CLASSES)
    if emulated:
        import fusedrnn.emulation as emulation
        emulation.enable(seed=0, sm_count=8)
        device = "cpu"
    elif not torch.cuda.is_available():
        sys.exit("gpu_smoke: no CUDA GPU (--emulated runs it on the emulated backend)")
    else:
        device = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    results = [case(c, p, pk, dt, device) for c in cells for p in ("standard", "persistent") for pk in (False, True)
               for dt in (torch.float32, torch.bfloat16)]
    print(f"gpu_smoke: {sum(results)}/{len(results)} ok")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
