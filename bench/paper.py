"""Paper-scale MNIST goals, each with its paper's own method: deep AE with RBM pre-training (3.00), RBM
500 hidden with AIS and reverse AIS (-86.34), one-stochastic-layer VAE by IWAE NLL (86.76), DCGAN
Frechet distance within 3x of the real floor.

    python -m bench.paper GOAL --device cpu --out bench/results/paper --epochs N [--resume]

GOAL is one of ae, rbm, vae, gan. Training checkpoints every ``--checkpoint-every`` epochs under
``OUT/GOAL/checkpoints``; ``--resume`` continues from there (or reuses ``OUT/GOAL/model.pt`` when the
training finished and only the measurement is left). The result, with the command, epochs, wall time,
date and machine, goes to ``OUT/GOAL.json``. The same command runs unchanged with ``--device cuda``.

Imports neither prefect nor mlflow.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from bench.common import environment, forbidden_imports
from bench.paper_goals import GOALS, RUNS, verdict
from genlib.errors import GenlibError

logger = logging.getLogger("bench.paper")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("goal", choices=sorted(RUNS))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("bench/results/paper"))
    p.add_argument("--epochs", type=int, required=True, help="training epochs (fine-tuning epochs for ae)")
    p.add_argument("--checkpoint-every", type=int, default=1)
    p.add_argument("--resume", action="store_true", help="continue from OUT/GOAL's checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the goal's own)")
    p.add_argument("--train-subset", type=int, default=None, help="use only this many training images (smoke runs)")
    g = p.add_argument_group("ae")
    g.add_argument("--pretrain-epochs", type=int, default=10, help="RBM epochs per layer (paper: 10)")
    g = p.add_argument_group("rbm")
    g.add_argument("--cd-k", type=int, default=None, help="CD steps (default 25, grown from 1)")
    g.add_argument("--pcd", action="store_true", help="persistent CD")
    g.add_argument("--lr-decay", type=float, default=0.0)
    g.add_argument("--ais-betas", type=int, default=14500)
    g.add_argument("--ais-chains", type=int, default=100)
    g.add_argument("--raise-betas", type=int, default=1000)
    g.add_argument("--raise-images", type=int, default=None, help="RAISE on the first N test images (default all)")
    g = p.add_argument_group("vae")
    g.add_argument("--iwae-k", type=int, default=1, help="training importance samples (1: ELBO)")
    g.add_argument("--eval-k", type=int, default=5000)
    g.add_argument("--eval-chunk", type=int, default=100)
    g.add_argument("--eval-images", type=int, default=None, help="IWAE NLL on the first N test images (default all)")
    g = p.add_argument_group("gan")
    g.add_argument("--gan-features", type=int, default=64)
    g.add_argument("--fid-samples", type=int, default=10000)
    g.add_argument("--classifier-epochs", type=int, default=4)
    args = p.parse_args(argv)
    for name in ("epochs", "checkpoint_every", "pretrain_epochs", "ais_betas", "ais_chains", "raise_betas",
                 "iwae_k", "eval_k", "eval_chunk", "fid_samples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer")
    return args


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    env = environment(device)
    return f"{env['usable_cpus']}-core CPU ({env['cpu_model']}), {torch.get_num_threads()} torch thread(s)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from genlib.data import load_dataset
    from genlib.training import resolve_device

    try:
        device = resolve_device(args.device)
        out = args.out / args.goal
        if out.exists() and any(out.iterdir()) and not args.resume:
            raise GenlibError(f"{out} has a previous run: pass --resume to continue it, or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        data = load_dataset("mnist")
        if args.train_subset:
            data = data.subset(n_train=args.train_subset)
        result = RUNS[args.goal](data, args, out, device)
    except GenlibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    goal = GOALS[args.goal]
    value = float(result["value"])
    record = {
        "goal": args.goal, "what": goal.what, "anchor": goal.anchor, "value": value,
        "verdict": verdict(value, goal.anchor, goal.higher_is_better),
        "command": "python -m bench.paper " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "wall_seconds_this_process": round(time.perf_counter() - t0, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(device),
        "python": platform.python_version(), "torch": torch.__version__, "train_images": int(data.x_train.shape[0]),
        **{k: v for k, v in result.items() if k != "value"},
    }
    spe = result.get("seconds_per_epoch")
    if isinstance(spe, (int, float)) and math.isfinite(spe):
        record["projected_train_hours_at_paper_epochs"] = round(spe * goal.paper_epochs / 3600, 2)
        record["paper_epochs"] = goal.paper_epochs
    path = args.out / f"{args.goal}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"{goal.what}: {result['number']} -> {record['verdict']} (goal {goal.anchor}); written to {path}")
    bad = forbidden_imports()
    if bad:  # the GPU box this runs on has torch only
        print(f"error: bench.paper imported {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
