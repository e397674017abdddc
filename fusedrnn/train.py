"""Train a documented model with fusedrnn's recurrent layers or torch.nn's.

    python -m fusedrnn.train MODEL [--rnn fusedrnn|torch] [--epochs N] [--device cpu|cuda]
                                   [--seeds 0,1,2] [--compare] [--checkpoint PATH] [--resume PATH] [--json PATH]
    python -m fusedrnn.train --list

The recipe is the seed's fit_one_cycle: AdamW (betas 0.9/0.99, eps 1e-5, decoupled weight decay),
a one-cycle schedule (warm-up over the first quarter from lr/25, cosine annealing to lr/1e5,
momentum 0.95 -> 0.85 -> 0.95), and model.reset() before training and before validation in every
epoch. --compare trains the model with torch.nn and with fusedrnn from the same seed and prints both
tables and the speed ratio.

Data-parallel: `torchrun --nproc-per-node N -m fusedrnn.train MODEL [...]` (gloo on the CPU, NCCL
on GPUs, one GPU a rank). Each rank trains on its shard of the training batches (batch k goes to
rank k % N, the same number of batches on every rank) under DistributedDataParallel, so a step sees
N batches; the schedule counts the steps of one rank. Every rank validates on the whole validation
set; only rank 0 prints, writes the JSON and saves checkpoints; --resume restores every rank
(each rank's random state is in the checkpoint).
"""
import argparse
import builtins
import json
import os
import statistics
import sys
import time

import torch

from .models import MODELS


def _progress(epoch, epochs, done, total, stream=sys.stderr):
    if not stream.isatty():
        return
    width = 30
    filled = width * done // max(total, 1)
    stream.write(f"\r  epoch {epoch + 1}/{epochs} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        stream.write("\r" + " " * (width + 40) + "\r")
    stream.flush()


def _to(batch, device):
    inputs, target = batch
    return tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in inputs), target.to(device)


def _param_groups(model, wd):
    """fastai's default (wd_bn_bias=False): no weight decay on normalisation layers' parameters and on
    the `bias` of layers that have one as a tensor attribute (Linear, Conv...); recurrent layers'
    biases, named bias_ih_l0 and so on, are decayed like weights."""
    norm = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)
    no_decay = set()
    for m in model.modules():
        if isinstance(m, norm):
            no_decay.update(id(p) for p in m.parameters())
        elif isinstance(getattr(m, "bias", None), torch.nn.Parameter):
            no_decay.add(id(m.bias))
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) not in no_decay], "weight_decay": wd},
            {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0}]


def _reset(model):
    if hasattr(model, "reset"):
        model.reset()


def _dist():
    """(rank, world size) of the process group, or (0, 1) outside one."""
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d.get_rank(), d.get_world_size()
    return 0, 1


def _sum_across_ranks(*values):
    """The values summed over the ranks (as they are on one rank)."""
    if _dist()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return tuple(t.tolist())


def fit_one_cycle(task, rnn="fusedrnn", epochs=None, seed=0, device="cpu", checkpoint=None, resume=None,
                  stop_after=None, log=print, progress=True, data_dir=None):
    """Train task's model for `epochs` (the schedule's length), stopping early after epoch
    `stop_after` if given (resume later from the checkpoint); returns {"history": [per-epoch dicts],
    "train_seconds": float, "final_accuracy": float, "model": module, ...}."""
    device = torch.device(device)
    epochs = epochs or task.epochs
    train_batches, valid_batches = task.data(data_dir)
    rank, world = _dist()
    if world > 1:  # this rank's shard, the same number of batches on every rank
        per_rank = len(train_batches) // world
        if per_rank == 0:
            raise ValueError(f"{task.name} has {len(train_batches)} training batches, fewer than the {world} ranks")
        train_batches = [train_batches[k] for k in range(rank, per_rank * world, world)]
    torch.manual_seed(seed)
    module = task.build(rnn, device)
    model = module
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
        torch.manual_seed(seed + rank)  # dropout masks differ between the shards
    opt = torch.optim.AdamW(_param_groups(module, task.wd), lr=task.lr, betas=(0.9, 0.99), eps=1e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=task.lr, total_steps=epochs * len(train_batches), pct_start=0.25, anneal_strategy="cos",
        cycle_momentum=True, base_momentum=0.85, max_momentum=0.95, div_factor=25.0, final_div_factor=1e5 / 25)
    history, start_epoch, train_seconds = [], 0, 0.0
    if resume:
        state = torch.load(resume, weights_only=False)
        if state["task"] != task.name or state["rnn"] != rnn:
            raise ValueError(f"checkpoint {resume} is for {state['task']} with {state['rnn']}, not {task.name} "
                             f"with {rnn}")
        module.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        if len(rngs) != world:
            raise ValueError(f"checkpoint {resume} was written by {len(rngs)} rank(s); resume it with as many")
        torch.set_rng_state(rngs[rank])
        history, start_epoch, train_seconds = state["history"], state["epoch"], state["train_seconds"]
        log(f"resumed {task.name} ({rnn}) after epoch {start_epoch} from {resume}")

    log(f"{'epoch':<6} {'train_loss':>10} {'valid_loss':>10} {'accuracy':>9} {'time':>7}")
    for row in history:
        log(_format_row(row))
    for epoch in range(start_epoch, min(epochs, stop_after or epochs)):
        t0 = time.perf_counter()
        _reset(module)
        model.train()
        total_loss, n = 0.0, 0
        for k, batch in enumerate(train_batches):
            inputs, target = _to(batch, device)
            loss = task.loss(model(*inputs), target)
            opt.zero_grad()
            loss.backward()
            if task.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), task.clip)
            opt.step()
            sched.step()
            total_loss, n = total_loss + loss.item(), n + 1
            if progress:
                _progress(epoch, epochs, k + 1, len(train_batches))
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds = time.perf_counter() - t0
        train_seconds += epoch_seconds
        total_loss, n = _sum_across_ranks(total_loss, n)
        _reset(module)
        model.eval()
        valid_loss, correct, count = 0.0, 0, 0
        with torch.no_grad():
            for batch in valid_batches:
                inputs, target = _to(batch, device)
                out = module(*inputs)
                valid_loss += task.loss(out, target).item()
                c, t = task.accuracy(out, target)
                correct, count = correct + c, count + t
        row = {"epoch": epoch, "train_loss": total_loss / max(n, 1), "valid_loss": valid_loss / max(len(valid_batches), 1),
               "accuracy": correct / max(count, 1), "seconds": time.perf_counter() - t0}
        history.append(row)
        log(_format_row(row))
        if checkpoint:
            rngs = [torch.get_rng_state()]
            if world > 1:
                rngs = [None] * world
                torch.distributed.all_gather_object(rngs, torch.get_rng_state())
            if rank == 0:
                torch.save({"task": task.name, "rnn": rnn, "seed": seed, "epoch": epoch + 1,
                            "model": module.state_dict(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "rng": rngs if world > 1 else rngs[0],
                            "history": history, "train_seconds": train_seconds, "world_size": world}, checkpoint)
            if world > 1:
                torch.distributed.barrier()  # the checkpoint is on disk before any rank goes on
    return {"task": task.name, "rnn": rnn, "seed": seed, "epochs": epochs, "history": history,
            "final_accuracy": history[-1]["accuracy"] if history else None, "train_seconds": train_seconds,
            "model": module, "world_size": world}


def _format_row(row):
    minutes, seconds = divmod(int(round(row["seconds"])), 60)
    return (f"{row['epoch']:<6} {row['train_loss']:>10.6f} {row['valid_loss']:>10.6f} {row['accuracy']:>9.6f} "
            f"{minutes:02d}:{seconds:02d}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fusedrnn.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="a documented model (--list shows them)")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    parser.add_argument("--rnn", choices=["fusedrnn", "torch"], default="fusedrnn")
    parser.add_argument("--epochs", type=int, default=None, help="default: the seed's")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default=None, help="comma-separated seeds; reports the median final accuracy")
    parser.add_argument("--compare", action="store_true", help="train with torch.nn and with fusedrnn, same seeds")
    parser.add_argument("--checkpoint", default=None, help="save a checkpoint here after every epoch")
    parser.add_argument("--resume", default=None, help="resume from this checkpoint")
    parser.add_argument("--stop-after", type=int, default=None, help="stop after this epoch (resume later)")
    parser.add_argument("--json", default=None, help="write the tables and times to this JSON file")
    parser.add_argument("--data", default=None,
                        help="data folder: AG News (train.csv, test.csv), IMDB (aclImdb), or text files for char_lstm")
    args = parser.parse_args(argv)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():  # under torchrun
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if args.device.startswith("cuda"):
            args.device = f"cuda:{local}"
            torch.cuda.set_device(local)
        torch.distributed.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
        if args.compare or args.seeds:
            parser.error("under torchrun, train one model with one seed; drop --compare / --seeds")
    try:
        result = _main(parser, args)
        if world > 1:
            torch.distributed.barrier()  # every rank done before any tears the process group down
        return result
    finally:
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _main(parser, args):
    rank = _dist()[0]
    print = builtins.print if rank == 0 else (lambda *a, **k: None)  # noqa: A001  (only rank 0 prints)
    if args.list or not args.model:
        for name, task in MODELS.items():
            print(f"{name:<19} {task.description} (epochs {task.epochs}, lr {task.lr}, wd {task.wd})")
        return None
    if args.model not in MODELS:
        parser.error(f"unknown model {args.model!r}; --list shows the models")
    if (args.checkpoint or args.resume) and (args.compare or args.seeds):
        parser.error("--checkpoint and --resume train one model with one seed; drop --compare / --seeds")
    task = MODELS[args.model]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    backends = ["torch", "fusedrnn"] if args.compare else [args.rnn]
    runs = []
    for seed in seeds:
        for rnn in backends:
            ranks = f" x {_dist()[1]} ranks" if _dist()[1] > 1 else ""
            print(f"\n== {task.name} with {rnn}, seed {seed}, on {args.device}{ranks}")
            try:
                result = fit_one_cycle(task, rnn, args.epochs, seed, args.device, args.checkpoint, args.resume,
                                       args.stop_after, log=print, progress=rank == 0, data_dir=args.data)
            except FileNotFoundError as e:
                parser.exit(2, f"error: {e}\n")
            model = result.pop("model")
            chars = task.extra.get("cache", {}).get("chars")
            if chars:  # a character model: show what it writes
                from .models.classifiers import sample

                result["sample"] = sample(model, chars, prime="def ", length=300, seed=seed)
                print("sample:\n" + result["sample"])
            runs.append(result)
    print("\n== summary")
    summary = {}
    for rnn in backends:
        accs = [r["final_accuracy"] for r in runs if r["rnn"] == rnn]
        secs = [r["train_seconds"] for r in runs if r["rnn"] == rnn]
        summary[rnn] = {"median_accuracy": statistics.median(accs), "accuracies": accs,
                        "median_train_seconds": statistics.median(secs)}
        print(f"{rnn:<9} final accuracy median {statistics.median(accs):.4f} over seeds {seeds}: "
              f"{', '.join(f'{a:.4f}' for a in accs)}; training time median {statistics.median(secs):.1f} s")
    if args.compare:
        ratio = summary["torch"]["median_train_seconds"] / summary["fusedrnn"]["median_train_seconds"]
        summary["speed_ratio"] = ratio
        print(f"speed: torch.nn training time / fusedrnn training time = {ratio:.2f}x")
    if args.json and rank == 0:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"model": task.name, "device": args.device, "torch": torch.__version__, "runs": runs,
                       "summary": summary}, f, indent=2)
        print(f"wrote {args.json}")
    return runs


if __name__ == "__main__":
    main()
