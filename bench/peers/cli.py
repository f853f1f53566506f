"""Command line of the peers benchmark: which comparisons, how many repeats, outputs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bench.common import environment, update_benchmarks_doc
from bench.peers import rbm, vae
from bench.peers.common import load_peer_data
from bench.peers.render import render_markdown
from bench.peers.run import compare

PEERS_BEGIN, PEERS_END = "<!-- peers:begin -->", "<!-- peers:end -->"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peers",
                                description="genlib against pythae (VAE), learnergy and scikit-learn (RBM).")
    p.add_argument("--quick", action="store_true", help="3 repeats of 2 epochs, cheaper estimators (< 10 min on CPU)")
    p.add_argument("--only", default="vae,rbm", help="comma list of vae, rbm")
    p.add_argument("--repeats", type=int, help="interleaved repeats (default 3 with --quick, else 6)")
    p.add_argument("--epochs", type=int, help="epochs per fit (default 2 with --quick, else 3)")
    p.add_argument("--train-images", type=int, help="training images (default all 50,000)")
    p.add_argument("--test-images", type=int, help="test images (default all 10,000)")
    p.add_argument("--iwae-k", type=int, help="importance samples (default 100 with --quick, else 5000)")
    p.add_argument("--iwae-images", type=int, help="test images for IWAE (default 1000)")
    p.add_argument("--pl-exact-images", type=int, help="test images for the exact pseudo-likelihood (200 / 1000)")
    p.add_argument("--rbm-lr", type=float, default=0.05)
    p.add_argument("--rbm-hidden", type=int, default=500)
    p.add_argument("--synthetic", type=int, metavar="N", help="N random images instead of MNIST (tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path, help="write this benchmark's section of this file (docs/benchmarks.md)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    unknown = set(args.only.split(",")) - {"vae", "rbm"}
    if unknown:
        p.error(f"--only: unknown comparison {sorted(unknown)[0]!r}; use vae, rbm")
    return args


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("pythae", "learnergy", "scikit-learn"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} not installed")
    return ", ".join(out)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the comparisons; prints the ratios (markdown) and returns the report."""
    t_start, cpu_start = time.perf_counter(), time.process_time()
    args = parse_args(argv)
    log: Callable[[str], None] = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    torch.set_num_threads(1)  # one thread per library, torch and BLAS alike
    from threadpoolctl import threadpool_limits

    quick = args.quick
    repeats, epochs = args.repeats or (3 if quick else 6), args.epochs or (2 if quick else 3)
    iwae_k, iwae_images = args.iwae_k or (100 if quick else 5000), args.iwae_images or 1000
    pl_exact = args.pl_exact_images if args.pl_exact_images is not None else (200 if quick else 1000)
    data = load_peer_data(args.train_images, args.test_images, args.seed, args.synthetic)
    report: dict[str, Any] = {
        "environment": environment(torch.device("cpu")),
        "versions": _versions(),
        "settings": {"argv": list(argv) if argv is not None else sys.argv[1:], "repeats": repeats, "epochs": epochs,
                     "train_images": int(data.train.shape[0]), "test_images": int(data.test.shape[0]),
                     "data": data.source + ", binarised once with fixed seeds", "iwae_k": iwae_k,
                     "iwae_images": min(iwae_images, data.test.shape[0]), "pl_exact_images": min(pl_exact, data.test.shape[0]),
                     "rbm_lr": args.rbm_lr, "rbm_hidden": args.rbm_hidden, "threads": 1, "seed": args.seed},
    }
    with threadpool_limits(limits=1, user_api="blas"):
        if "vae" in args.only.split(","):
            log("vae: genlib vs pythae")
            report["vae"] = compare(
                vae.sides(data, epochs, args.seed), [("genlib", "pythae")], epochs=epochs, repeats=repeats,
                cheap_score=lambda m: vae.score(m, data.test, iwae_k=1, iwae_images=0, seed=args.seed),
                full_score=lambda m: vae.score(m, data.test, iwae_k=iwae_k, iwae_images=iwae_images, seed=args.seed),
                quality_key="elbo", log=log)
            report["vae"]["unmatched"] = vae.UNMATCHED
        if "rbm" in args.only.split(","):
            log("rbm: genlib vs learnergy (CD-1) and scikit-learn (PCD-1)")
            report["rbm"] = compare(
                rbm.sides(data, epochs, args.seed, args.rbm_hidden, args.rbm_lr), rbm.PAIRS, epochs=epochs,
                repeats=repeats, cheap_score=lambda m: rbm.score(m, data.test, exact_images=0, seed=args.seed),
                full_score=lambda m: rbm.score(m, data.test, exact_images=pl_exact, seed=args.seed),
                quality_key="pl_exact" if pl_exact else "pl_stochastic", log=log)
            report["rbm"]["unmatched"] = rbm.UNMATCHED
    report["wall_seconds"] = time.perf_counter() - t_start
    report["cpu_seconds"] = time.process_time() - cpu_start  # wall minus what other processes took from us
    text = render_markdown(report)
    print(text, end="")
    if args.markdown:
        command = "python -m bench.peers " + " ".join(report["settings"]["argv"])
        section = f"{PEERS_BEGIN}\n## genlib against its peers (pythae, learnergy, scikit-learn)\n\nCommand: `{command}`\n\n{text}{PEERS_END}"
        update_benchmarks_doc(args.markdown, section, PEERS_BEGIN, PEERS_END)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
