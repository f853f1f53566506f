"""The default run's wall time and its split: ``genlib pipeline`` as ``make run`` runs it, against a fresh
tracking store and fresh caches (data conversion and the feature classifier included, as on a fresh
clone), with the pipeline's own closing ``time X s = compute Y s (...) + ...`` line parsed and written
to docs/benchmarks.md. Two runs: the first with a new Prefect home and caches (a fresh clone's first
``make run`` on a new machine: its temporary Prefect server creates the database,
MNIST is converted and the feature classifier trained), the second a new clone on the same machine: a new
Prefect home (started from the empty database the first cached) and tracking store, the user cache kept. Run ``python -m bench.make_run`` on a quiet machine; ``--dry`` only prints.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import update_benchmarks_doc

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- make-run:begin -->", "<!-- make-run:end -->"
COMMAND = ["genlib", "pipeline", "--dataset", "mnist", "--n-train", "10000", "--n-val", "2000", "--profile", "quick",
           "--device", "cpu"]
TIME_LINE = re.compile(r"^time ([\d.]+)s = compute ([\d.]+)s \(train ([\d.]+), evaluate ([\d.]+), suite ([\d.]+)\)"
                       r" \+ MLflow logging ([\d.]+)s \+ Prefect runs, data checks, model loading ([\d.]+)s"
                       r" \+ start-up ([\d.]+)s")
FAMILY_LINE = re.compile(r"^(\S+)\s+\d+\s+\S+\s+.*\s(passed|failed\S*|forced\S*)\s+([\d.]+)s$")


def run_pipeline(extra: list[str], home: Path, store: str, prefect: str = "prefect") -> tuple[str, float]:
    """Run the pipeline with tracking store ``home/<store>``, caches in ``home/cache`` and the Prefect home
    ``home/<prefect>`` (new when ``home`` is); returns (its output, wall seconds of the process)."""
    env = {**os.environ, "GENLIB_MLFLOW_DIR": f"{home}/{store}", "GENLIB_CACHE_DIR": f"{home}/cache",
           "PREFECT_HOME": f"{home}/{prefect}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "genlib.cli", *COMMAND[1:], *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: the pipeline failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return proc.stdout + proc.stderr, wall


PARALLEL_LINE = re.compile(r"^time ([\d.]+)s = start-up ([\d.]+)s .*? \+ ([\d.]+)s on (\d+) "
                           r"worker(?:s \(.*?\)| processes) \+ "
                           r"([-\d.]+)s in this process .*?= compute ([\d.]+) \(train ([\d.]+), evaluate ([\d.]+), "
                           r"suite ([\d.]+)\) \+ MLflow logging ([\d.]+) \+ .*? idle cores ([-\d.]+)")


def _first(pattern: re.Pattern[str], output: str) -> re.Match[str] | None:
    return next((m for m in map(pattern.match, output.replace("\r", "").splitlines()) if m), None)


def split(output: str, wall: float) -> dict[str, float]:
    """The numbers of one run's closing time line (worker processes or one process)."""
    par, seq = _first(PARALLEL_LINE, output), _first(TIME_LINE, output)
    if par is not None:
        keys = ("total", "startup", "pool", "workers", "parent", "compute", "train", "evaluate", "suite", "mlflow",
                "rest")
        row = dict(zip(keys, map(float, par.groups())))
    elif seq is not None:
        keys = ("total", "compute", "train", "evaluate", "suite", "mlflow", "rest", "startup")
        row = {**dict(zip(keys, map(float, seq.groups()))), "workers": 1.0, "parent": 0.0}
        row["pool"] = row["total"] - row["startup"]
    else:
        raise SystemExit("error: the pipeline printed no time split line")
    # Share of the cores' time (workers x the whole run) not spent computing: start-up, this process's own
    # steps, logging, Prefect, loading and idle cores all count against it (with one process: total - compute).
    row["overhead"] = 1 - row["compute"] / (row["workers"] * row["total"])
    row["wall"] = wall
    return row


def render(runs: list[tuple[str, str, float]]) -> str:
    """The section for ``runs``: (label, pipeline output, process wall seconds) each."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN, "## The default run (`make run`: 10,000 MNIST training images, profile quick, 8 families, CPU)", "",
        f"Command: `python -m bench.make_run` (runs `{' '.join(COMMAND)}` against a fresh store and caches, as a",
        f"fresh clone's `make run` does after `uv sync`). {when}, {platform.machine()}, {os.cpu_count()} cores.", "",
        "| run | wall (process) | pipeline total | start-up | workers | their wall | train | per-model eval | "
        "suite | MLflow logging | Prefect, loading, idle | in this process | cores not computing |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [(label, split(output, wall)) for label, output, wall in runs]
    for label, r in rows:
        lines.append(f"| {label} | {r['wall']:.0f} s | {r['total']:.0f} s | {r['startup']:.1f} s | {r['workers']:.0f} | "
                     f"{r['pool']:.0f} s | {r['train']:.0f} s | {r['evaluate']:.0f} s | {r['suite']:.0f} s | "
                     f"{r['mlflow']:.1f} s | {r['rest']:.0f} s | {r['parent']:.1f} s | **{100 * r['overhead']:.1f}%** |")
    lines += ["", "train, per-model eval, suite, logging and Prefect/loading/idle are seconds summed over the workers "
              "(one torch thread each: a thread of the pipeline's process and worker processes); the rest is wall "
              "time. The share not computing is 1 - compute / (workers x pipeline total).", ""]
    families = [(f.group(1), f.group(3)) for f in map(FAMILY_LINE.match, runs[-1][1].splitlines()) if f]
    lines += ["Training seconds per family (last run): " + ", ".join(f"{n} {s} s" for n, s in families) + ".", ""]
    goals = [f"{label}: pipeline {r['total']:.0f} s ({'met' if r['total'] <= 300 else 'missed'}), "
             f"{100 * r['overhead']:.1f}% outside compute ({'met' if r['overhead'] <= 0.15 else 'missed'})"
             for label, r in rows]
    lines += ["Goals (pipeline at most 300 s; at most 15% outside compute): " + "; ".join(goals) + ".", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="print the section instead of writing docs/benchmarks.md")
    parser.add_argument("--from-log", type=Path, help="render the split of a saved pipeline output instead of running")
    parser.add_argument("--wall", type=float, default=0.0, help="with --from-log: the process's wall seconds")
    args = parser.parse_args(argv)
    if args.from_log:
        runs = [("from log", args.from_log.read_text(), args.wall)]
    else:
        runs = []
        with tempfile.TemporaryDirectory(prefix="genlib-make-run-") as tmp:
            # The second is a new clone on a machine that ran genlib before: a new Prefect home (seeded from
            # the empty database the first run cached) and store, the user cache kept (data, feature
            # classifier). A later run in the same clone keeps its Prefect home, which starts as fast.
            for label, store, prefect in (
                ("first run (new Prefect home, caches, store)", "mlflow-1", "prefect-1"),
                ("another clone (new Prefect home and store; user cache kept)", "mlflow-2", "prefect-2"),
            ):
                output, wall = run_pipeline([], Path(tmp), store, prefect)
                log = ROOT / "bench" / "results" / f"make_run-{store}.log"  # the timeline, to read where time went
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(output)
                print(f"{label}: {wall:.0f} s (output in {log})", file=sys.stderr)
                runs.append((label, output, wall))
    section = render(runs)
    print(section)
    if not args.dry:
        update_benchmarks_doc(ROOT / "docs" / "benchmarks.md", section, BEGIN, END)


if __name__ == "__main__":
    main()
