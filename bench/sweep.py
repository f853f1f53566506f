"""Sweeps against the quick presets: ``genlib sweep`` of the vae and the gan on the MNIST default data (10,000
training and 2,000 validation images), 16 trials each, once with 1 and once with 2 local worker processes,
each in a fresh tracking store and study (the user cache kept: data and feature classifier). Reports the best
trial against the preset's (trial 0) on the objective, the family's primary metric and sample quality
(recognised, precision, FID), the wall time of each worker count, and the epochs pruning saved; writes the
table to docs/benchmarks.md. Run ``python -m bench.sweep`` on a quiet machine (an hour or more on 2 CPU
cores); ``--trials 2 --set train.epochs=1 --dry`` checks that it works in minutes. The second domain (drawn
shapes): ``--dataset shapes --families FAMILY --workers 1`` for a family whose preset fails its gates there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import update_benchmarks_doc

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- sweep:begin -->", "<!-- sweep:end -->"
QUALITY = ("recognised", "precision", "fid")


def run_sweep(family: str, workers: int, args: argparse.Namespace, home: Path) -> tuple[dict[str, Any], float]:
    """One ``genlib sweep ... --json`` in a new store and Prefect home under ``home``; (its result, wall s)."""
    env = {**os.environ, "GENLIB_MLFLOW_DIR": str(home / "mlflow"), "PREFECT_HOME": str(home / "prefect")}
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "GENLIB_OPTUNA_STORAGE"):
        env.pop(key, None)
    command = [sys.executable, "-m", "genlib.cli", "sweep", family, "--dataset", args.dataset, "--trials",
               str(args.trials), "--parallel", str(workers), "--device", "cpu", "--dispatch", "local", "--json"]
    command += ["--n-train", str(args.n_train), "--n-val", str(args.n_val)]
    for item in args.set or []:
        command += ["--set", item]
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log = ROOT / "bench" / "results" / f"sweep-{family}-{workers}w.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"error: genlib sweep {family} --parallel {workers} failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-400:]}")
    return json.loads(proc.stdout), wall


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The docs section: one row per (family, workers) sweep."""
    from genlib.models.catalog import model_info

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    extra = "".join(f" --set {s}" for s in args.set or [])
    families = ", ".join(dict.fromkeys(r["family"] for r in rows))
    lines = [BEGIN, f"## Sweeps against the quick presets (`genlib sweep`: {families} on {args.dataset})", "",
             f"Command: `python -m bench.sweep --trials {args.trials}{extra}` ({args.n_train} training and "
             f"{args.n_val} validation images of {args.dataset}, CPU, a fresh store and study per row). {when}, "
             f"{platform.machine()}, {os.cpu_count()} cores. The preset runs as trial 0; 'best' is the study's best "
             "trial on the objective, evaluated (and registered) as the pipeline does; the preset's model gets "
             "the same evaluation.", "",
             "| family | workers | wall | trials complete / pruned / failed | epochs saved by pruning | objective: "
             "best (trial) vs preset | primary metric: best vs preset | recognised | precision | FID |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        res, fam = r["result"], r["family"]
        primary = model_info(fam).primary_metric
        b, p = res.get("best_metrics", {}), res.get("preset_metrics", {})
        counts: dict[str, int] = {}
        for t in res["trials"]:
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        quality = [f"{_fmt(b.get(k))} vs {_fmt(p.get(k))}" for k in QUALITY]
        lines.append(
            f"| {fam} | {r['workers']} | {r['wall']:.0f} s | {counts.get('complete', 0)} / {counts.get('pruned', 0)} / "
            f"{counts.get('failed', 0)} | {res['epochs_saved']} | {res['metric']} {_fmt(res['best_value'])} "
            f"(#{res['best_number']}) vs {_fmt(res['preset_value'])} | {primary} {_fmt(b.get(primary))} vs "
            f"{_fmt(p.get(primary))} | " + " | ".join(quality) + " |")
    speed = {}
    for fam in dict.fromkeys(r["family"] for r in rows):
        walls = {r["workers"]: r["wall"] for r in rows if r["family"] == fam}
        if 1 in walls and 2 in walls:
            speed[fam] = walls[1] / walls[2]
    if speed:
        lines += ["", "Speed-up of 2 workers over 1 (wall): " + ", ".join(f"{f} {s:.2f}x" for f, s in speed.items())
                  + ". Different worker counts sample different trials (TPE sees other finished trials when it "
                  "asks), so the two rows of a family need not find the same best."]
    lines += ["", "Timings on a shared machine are noisy; rerun on a quiet one before quoting them.", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="vae,gan", help="comma-separated (default vae,gan)")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--workers", default="1,2", help="worker counts to time (default 1,2)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-val", type=int, default=2000)
    parser.add_argument("--set", action="append", metavar="FIELD=VALUE", help="pinned in every trial (repeatable)")
    parser.add_argument("--dry", action="store_true", help="print the section instead of writing docs/benchmarks.md")
    args = parser.parse_args(argv)
    rows = []
    for family in [f.strip() for f in args.families.split(",") if f.strip()]:
        for workers in [int(w) for w in args.workers.split(",")]:
            with tempfile.TemporaryDirectory(prefix="genlib-bench-sweep-") as tmp:
                result, wall = run_sweep(family, workers, args, Path(tmp))
            print(f"{family}, {workers} worker(s): {wall:.0f} s, best trial {result['best_number']}", file=sys.stderr)
            rows.append({"family": family, "workers": workers, "wall": wall, "result": result})
    section = render(rows, args)
    print(section)
    if not args.dry:
        update_benchmarks_doc(ROOT / "docs" / "benchmarks.md", section, BEGIN, END)


if __name__ == "__main__":
    main()
