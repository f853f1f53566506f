"""The default run's wall time and its split: ``genlib pipeline`` as ``make run`` runs it, against a fresh
tracking store and fresh caches (data conversion and the feature classifier included, as on a fresh
clone), with the pipeline's own closing ``time X s = compute Y s (...) + ...`` line parsed and written
to docs/benchmarks.md. Run ``python -m bench.make_run`` on a quiet machine; ``--dry`` only prints.
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


def run_pipeline(extra: list[str]) -> tuple[str, float]:
    """Run the pipeline in a scratch store and cache; returns (its output, wall seconds of the process)."""
    with tempfile.TemporaryDirectory(prefix="genlib-make-run-") as tmp:
        env = {**os.environ, "GENLIB_MLFLOW_DIR": f"{tmp}/mlflow", "GENLIB_CACHE_DIR": f"{tmp}/cache"}
        env.pop("MLFLOW_TRACKING_URI", None)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "genlib.cli", *COMMAND[1:], *extra], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: the pipeline failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return proc.stdout + proc.stderr, wall


PARALLEL_LINE = re.compile(r"^time ([\d.]+)s = start-up ([\d.]+)s .*? \+ ([\d.]+)s on (\d+) worker processes \+ "
                           r"([-\d.]+)s in this process .*?= compute ([\d.]+) \(train ([\d.]+), evaluate ([\d.]+), "
                           r"suite ([\d.]+)\) \+ MLflow logging ([\d.]+) \+ .*? idle cores ([-\d.]+)")


def _first(pattern: re.Pattern[str], output: str) -> re.Match[str] | None:
    return next((m for m in map(pattern.match, output.replace("\r", "").splitlines()) if m), None)


def render(output: str, wall: float) -> str:
    families = [(f.group(1), f.group(3)) for f in map(FAMILY_LINE.match, output.splitlines()) if f]
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        BEGIN, "## The default run (`make run`: 10,000 MNIST training images, profile quick, 8 families, CPU)", "",
        f"Command: `python -m bench.make_run` (runs `{' '.join(COMMAND)}` against a fresh store and caches, as a",
        f"fresh clone's `make run` does after `uv sync`). {when}, {platform.machine()}, {os.cpu_count()} cores.", "",
    ]
    par, seq = _first(PARALLEL_LINE, output), _first(TIME_LINE, output)
    if par is not None:
        total, startup, pool, workers, parent, compute, train, evaluate, suite, mlflow, rest = map(float, par.groups())
        # Share of the cores' time (workers x the whole run) not spent computing: start-up, this process's
        # own steps, logging, Prefect, loading and idle cores all count against it.
        overhead = 1 - compute / (workers * total)
        table = [
            "| wall (process) | pipeline total | start-up | worker processes | their wall | train | per-model eval | "
            "suite | MLflow logging | Prefect, loading, idle | in this process | cores not computing |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {wall:.0f} s | {total:.0f} s | {startup:.1f} s | {workers:.0f} | {pool:.0f} s | {train:.0f} s | "
            f"{evaluate:.0f} s | {suite:.0f} s | {mlflow:.1f} s | {rest:.0f} s | {parent:.1f} s | "
            f"**{100 * overhead:.1f}%** |", "",
            "train, per-model eval, suite, logging and Prefect/loading/idle are process-seconds summed over the "
            "workers (one torch thread each); the rest is wall time.", "",
        ]
    elif seq is not None:
        total, compute, train, evaluate, suite, mlflow, prefect, startup = map(float, seq.groups())
        overhead = (total - compute) / total
        table = [
            "| wall (process) | pipeline total | train | per-model eval | suite | MLflow logging | Prefect, data checks, "
            "model loading | start-up | outside compute |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {wall:.0f} s | {total:.0f} s | {train:.0f} s | {evaluate:.0f} s | {suite:.0f} s | {mlflow:.1f} s | "
            f"{prefect:.1f} s | {startup:.1f} s | {total - compute:.0f} s = **{100 * overhead:.1f}%** |", "",
        ]
    else:
        raise SystemExit("error: the pipeline printed no time split line")
    tail = [
        "Training seconds per family: " + ", ".join(f"{n} {s} s" for n, s in families) + ".", "",
        f"Goals: pipeline at most 300 s ({'met' if total <= 300 else 'missed'}: {total:.0f} s); "
        f"at most 15% outside compute ({'met' if overhead <= 0.15 else 'missed'}: {100 * overhead:.1f}%).", END,
    ]
    return "\n".join(head + table + tail)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="print the section instead of writing docs/benchmarks.md")
    parser.add_argument("--from-log", type=Path, help="render the split of a saved pipeline output instead of running")
    parser.add_argument("--wall", type=float, default=0.0, help="with --from-log: the process's wall seconds")
    args = parser.parse_args(argv)
    output, wall = (args.from_log.read_text(), args.wall) if args.from_log else run_pipeline([])
    section = render(output, wall)
    print(section)
    if not args.dry:
        update_benchmarks_doc(ROOT / "docs" / "benchmarks.md", section, BEGIN, END)


if __name__ == "__main__":
    main()
