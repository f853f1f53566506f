"""Command line of the throughput benchmark: options, threads, the per-family time budget, outputs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import environment, forbidden_imports, update_benchmarks_doc
from bench.throughput.data import load_bench_data, synthetic_data
from bench.throughput.measure import measure_family
from bench.throughput.render import render_markdown
from bench.throughput.runner import LOG_EVERY
from bench.throughput.sklearn_rbm import compare_rbm_with_sklearn
from genlib.errors import ConfigError
from genlib.models import get_config_class, get_model_class, list_models
from genlib.spec import parse_set
from genlib.training.loop import resolve_device

THROUGHPUT_BEGIN, THROUGHPUT_END = "<!-- throughput:begin -->", "<!-- throughput:end -->"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description="Training throughput of genlib against the loop a user would write.")
    p.add_argument("--quick", action="store_true", help="10k-image subset, short measurements (< 2 min on 2 CPU cores)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--json", type=Path, help="write every number (all repeats) here")
    p.add_argument("--markdown", type=Path, help="write the tables here")
    p.add_argument("--families", help="comma list of registered models (default all)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats per measurement (default 3)")
    p.add_argument("--profile", help="a registered genlib profile (genlib.presets; default: quick with --quick, else full)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size of the naive loop and genlib's equal-batch row")
    p.add_argument("--big-batch", type=int, help="genlib's bigger batch (default 512 with --quick, else 1024)")
    p.add_argument("--bigger-batch", type=int, help="one more tuned row at this batch (default 2048; 0: none)")
    p.add_argument(
        "--compile-families",
        help="comma list of families to try torch.compile on, or 'all'/'none' (default: all; with --quick "
        "none on CPU, where one compile takes 20-40 s on 2 cores, and ae on CUDA)",
    )
    p.add_argument("--target-seconds", type=float, help="work per measurement (default 0.25 with --quick, else 3)")
    p.add_argument("--train-size", type=int, help="training images (default 10240 with --quick, else all)")
    p.add_argument("--dataset", default="mnist", help="genlib data set name (default mnist)")
    p.add_argument("--synthetic", type=int, metavar="N", help="use N random images instead of a data set (tests/dev)")
    p.add_argument("--skip-sklearn", action="store_true", help="leave out the RBM vs scikit-learn section")
    p.add_argument("--rbm-hidden", type=int, help="hidden units (default 256 with --quick, else 500)")
    p.add_argument("--rbm-epochs", type=int, help="epochs per fit (default 2 with --quick, else 10)")
    p.add_argument("--rbm-lr", type=float, default=0.05)
    p.add_argument("--rbm-batch-size", type=int, default=100)
    p.add_argument("--rbm-train-size", type=int, help="training images (default 10000 with --quick, else all)")
    p.add_argument("--pl-exact-images", type=int, help="test images for the exact pseudo-likelihood (50 / 1000)")
    p.add_argument(
        "--threads",
        default="auto",
        help="torch and BLAS threads: a number, or auto = torch's default unless the load average exceeds the "
        "usable CPUs, then 1 (spinning OpenMP threads on an oversubscribed machine slow matmuls 5-10x)",
    )
    p.add_argument(
        "--budget-seconds",
        type=float,
        help="wall-time budget: measurements shrink (down to one batch) to fit it (default 100 with --quick, else none)",
    )
    p.add_argument("--set", dest="set_", action="append", metavar="model.FIELD=VALUE",
                   help="a model field for every measured family whose config has it, as genlib's --set "
                   "(e.g. model.hidden_units=500: the RBM at the paper's width); repeatable")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def choose_threads(spec: str) -> tuple[int, str]:
    """Threads for torch and BLAS, and why: a number, or 'auto' (1 when the machine is oversubscribed)."""
    default = torch.get_num_threads()
    if spec != "auto":
        try:
            n = int(spec)
        except ValueError:
            raise SystemExit(f"--threads must be a number or auto, got {spec!r}") from None
        if n < 1:
            raise SystemExit(f"--threads must be at least 1, got {n}")
        return n, "asked for"
    try:
        load = os.getloadavg()[0]
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return default, "torch default"
    if load > cpus and default > 1:
        return 1, f"auto: load average {load:.1f} > {cpus} usable CPUs, so 1 thread instead of {default}"
    return default, f"auto: torch default (load average {load:.1f}, {cpus} usable CPUs)"


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit numpy's BLAS (scikit-learn's matmuls) to ``n`` threads, like torch's."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def _first_autoencoder() -> tuple[str, ...]:
    """One cheap family to compile in a quick CUDA run: the first unconditional autograd autoencoder."""
    for name in list_models():
        cls = get_model_class(name)
        if cls.reconstructs and cls.uses_autograd and not cls.conditional:
            return (name,)
    return ()


def _families(spec: str | None, default: Sequence[str]) -> list[str]:
    if spec is None:
        return list(default)
    if spec.strip().lower() == "all":
        return list_models()
    if spec.strip().lower() in ("none", ""):
        return []
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in list_models()]
    if unknown:
        raise SystemExit(f"unknown families: {', '.join(unknown)}; valid: {', '.join(list_models())}")
    return names


def _model_overrides(assignments: Sequence[str] | None, families: Sequence[str]) -> dict[str, Any]:
    """``--set`` as model fields; each must belong to at least one measured family."""
    try:
        overrides = parse_set(assignments)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    if overrides.train or overrides.evaluation:
        raise SystemExit("error: --set takes model fields only (the benchmark sets the batch sizes and epochs)")
    for field in overrides.model:
        if not any(field in get_config_class(f).model_fields for f in families):
            raise SystemExit(f"error: --set model.{field}: none of {', '.join(families)} has that field")
    return dict(overrides.model)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; prints the markdown tables and returns the report dict."""
    t_start = time.perf_counter()
    args = parse_args(argv)
    quick = args.quick
    log: Callable[[str], None] = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    device = resolve_device(args.device)
    threads, threads_reason = choose_threads(args.threads)
    torch.set_num_threads(threads)
    log(f"threads: {threads} ({threads_reason})")
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    profile = args.profile or ("quick" if quick else "full")
    big_batch = args.big_batch or (512 if quick else 1024)
    target = args.target_seconds or (0.25 if quick else 3.0)
    budget = args.budget_seconds if args.budget_seconds is not None else (100.0 if quick else None)
    reserve = 0.0 if args.skip_sklearn else (20.0 if quick else 0.0)  # rough wall time of the sklearn section
    train_size = args.train_size or (10240 if quick else None)
    families = _families(args.families, list_models())
    model_overrides = _model_overrides(args.set_, families)
    default_compile: Sequence[str] = list_models() if not quick else (_first_autoencoder() if device.type == "cuda" else ())
    compile_families = set(_families(args.compile_families, default_compile))

    t0 = time.perf_counter()
    if args.synthetic:
        data = synthetic_data(args.synthetic, args.seed, n_test=max(256, args.synthetic // 5))
    else:
        data = load_bench_data(args.dataset, train_size, args.seed)
    log(f"data: {data.source}, {data.x.shape[0]} training images ({time.perf_counter() - t0:.1f} s)")

    env = environment(device)
    report: dict[str, Any] = {
        "environment": env,
        "settings": {
            "argv": list(argv) if argv is not None else sys.argv[1:],
            "quick": quick,
            "profile": profile,
            "batch_size": args.batch_size,
            "big_batch": big_batch,
            "compile_families": sorted(compile_families),
            "repeats": args.repeats,
            "target_seconds": target,
            "train_images": int(data.x.shape[0]),
            "data_source": data.source,
            "seed": args.seed,
            "threads": threads,
            "threads_reason": threads_reason,
            "budget_seconds": budget,
            "model_overrides": model_overrides,
            "naive_loader": f"DataLoader(batch_size={args.batch_size}, shuffle=True, num_workers=0), loss.item() every "
            f"{LOG_EVERY} batches",
        },
        "families": [],
    }
    for i, family in enumerate(families):
        family_target = target
        if budget is not None:
            # Share what is left of the budget among the families still to run; every measurement
            # still covers at least one batch, so a busy machine can overrun it.
            left = budget - (time.perf_counter() - t_start) - reserve
            n_measurements = 6 * (args.repeats + 1.5)
            family_target = max(0.02, min(target, left / (len(families) - i) / n_measurements))
        result = measure_family(
            family,
            data,
            device=device,
            profile=profile,
            batch_size=args.batch_size,
            big_batch=big_batch,
            bigger_batch=2048 if args.bigger_batch is None else args.bigger_batch,
            compile_=family in compile_families,
            repeats=args.repeats,
            target_seconds=family_target,
            seed=args.seed,
            model_overrides=model_overrides,
            log=log,
        )
        result["target_seconds"] = family_target
        report["families"].append(result)
    if not args.skip_sklearn:
        rbm_train = args.rbm_train_size or (10000 if quick else data.x.shape[0])
        devices = [torch.device("cpu")] + ([device] if device.type != "cpu" else [])
        with blas_threads(threads):
            report["rbm_vs_sklearn"] = compare_rbm_with_sklearn(
                data.x[:rbm_train],
                data.x_test,
                hidden=args.rbm_hidden or (256 if quick else 500),
                lr=args.rbm_lr,
                batch_size=args.rbm_batch_size,
                epochs=args.rbm_epochs or (2 if quick else 10),
                repeats=args.repeats,
                exact_pl_images=args.pl_exact_images if args.pl_exact_images is not None else (50 if quick else 1000),
                devices=devices,
                seed=args.seed,
                log=log,
            )
        report["rbm_vs_sklearn"]["settings"]["threads"] = threads  # torch and BLAS alike
    report["forbidden_modules_imported"] = forbidden_imports()
    report["wall_seconds"] = time.perf_counter() - t_start
    text = render_markdown(report)
    print(text, end="")
    if args.markdown:
        # Only this benchmark's section of the file is replaced, so docs/benchmarks.md keeps the others.
        command = "python -m bench.throughput " + " ".join(argv if argv is not None else sys.argv[1:])
        section = f"{THROUGHPUT_BEGIN}\n## Training throughput\n\nCommand: `{command}`\n\n{text}\n{THROUGHPUT_END}"
        update_benchmarks_doc(args.markdown, section, THROUGHPUT_BEGIN, THROUGHPUT_END)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if report["forbidden_modules_imported"]:
        log(f"warning: imported {report['forbidden_modules_imported']}; the benchmark must not need them")
    return report


if __name__ == "__main__":
    main()
