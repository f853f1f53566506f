"""The VAE's written-out ELBO step (genlib/models/vae_step.py) against the autograd step, side by side.

Both train their own copy of the same model on the same batch in one process, in alternating blocks of
steps (one torch thread), so load from other processes falls on both alike; the speed-up is the median of
the paired block ratios. Models: the IWAE paper's 784-200-200-50 tanh VAE (bench.peers' setting), and the
``quick`` profile's ``vae`` (mixture-of-Gaussians prior) and ``cvae`` (``make run``'s two VAEs).

    OMP_NUM_THREADS=1 python -m bench.vae_step [--blocks 40] [--steps 20] [--batch 100] [--markdown docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from bench.common import environment, update_benchmarks_doc
from genlib.models import get_model
from genlib.models.base import GenerativeModel
from genlib.spec import resolve_spec

BEGIN, END = "<!-- vae-step:begin -->", "<!-- vae-step:end -->"


def _models() -> dict[str, Any]:
    return {
        "vae 784-200-200-50 tanh (IWAE paper; bench.peers)": resolve_spec("full", "vae", {"model": {"binarize": False}}).model,
        "vae, quick profile (mixture prior)": resolve_spec("quick", "vae", {}).model,
        "cvae, quick profile": resolve_spec("quick", "cvae", {}).model,
    }


def compare(config: Any, batch: int, blocks: int, steps: int) -> dict[str, Any]:
    """ms per step of the autograd step and of the model's own (written-out) step, ``blocks`` alternating
    blocks of ``steps`` steps each; returns medians and the paired speed-ups."""
    torch.manual_seed(0)
    written = get_model(config.model_name, config)
    auto = copy.deepcopy(written)
    opt_w, opt_a = written.configure_optimizers(), auto.configure_optimizers()
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(batch, *config.image_shape, generator=g) < 0.3).float()
    y = torch.randint(0, config.num_classes, (batch,), generator=g)
    written.train(), auto.train()
    sides = {
        "autograd": lambda: GenerativeModel.training_step(auto, x, y, opt_a, nullcontext()),
        "written": lambda: written.training_step(x, y, opt_w, nullcontext()),
    }
    ms: dict[str, list[float]] = {k: [] for k in sides}
    for fn in sides.values():  # warm-up: allocations, the optimizers' state
        for _ in range(steps):
            fn()
    for b in range(blocks):
        order = list(sides) if b % 2 == 0 else list(reversed(sides))
        for key in order:
            t0 = time.perf_counter()
            for _ in range(steps):
                sides[key]()
            ms[key].append((time.perf_counter() - t0) / steps * 1e3)
    paired = [a / w for a, w in zip(ms["autograd"], ms["written"])]
    return {"ms_autograd": statistics.median(ms["autograd"]), "ms_written": statistics.median(ms["written"]),
            "speedup": statistics.median(paired), "speedup_q1": statistics.quantiles(paired, n=4)[0],
            "speedup_q3": statistics.quantiles(paired, n=4)[2]}


def main(argv: Sequence[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog="python -m bench.vae_step", description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=40)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--markdown", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    env = environment(torch.device("cpu"))
    rows = []
    for label, config in _models().items():
        r = compare(config, args.batch, args.blocks, args.steps)
        rows.append(f"| {label} | {r['ms_autograd']:.2f} | {r['ms_written']:.2f} | **{r['speedup']:.2f}x** "
                    f"({r['speedup_q1']:.2f}-{r['speedup_q3']:.2f}) |")
    argv_s = " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join([
        f"Command: `OMP_NUM_THREADS=1 python -m bench.vae_step {argv_s}`, {env['timestamp']}, {env['cpu_model']}, "
        f"one torch thread, torch {env['torch']}; batch {args.batch}, {args.blocks} alternating blocks of "
        f"{args.steps} steps per side (each side trains its own copy of the same model).",
        "",
        "| model | autograd step, ms (median) | written-out step, ms | speed-up, median of paired blocks (quartiles) |",
        "|---|---|---|---|",
        *rows,
    ]) + "\n"
    print(text, end="")
    if args.markdown:
        section = f"{BEGIN}\n## The VAE's written-out ELBO step against autograd\n\n{text}{END}"
        update_benchmarks_doc(args.markdown, section, BEGIN, END)
    return text


if __name__ == "__main__":
    main()
