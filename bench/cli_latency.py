"""How long the ``genlib`` commands take to start and answer: median wall time of fresh subprocesses.

    python -m bench.cli_latency                # 5 runs per command, prints a table
    python -m bench.cli_latency --runs 7 --write-doc

The tracking commands run against a scratch embedded store (sqlite) holding one registered model with
two versions and one evaluation report, so the numbers measure genlib's start-up and one store read,
not a busy server. Bytecode is written as usual (PYTHONDONTWRITEBYTECODE is unset), as in a synced venv.
``--write-doc`` replaces this benchmark's section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- cli-latency:begin -->", "<!-- cli-latency:end -->"
MODEL = "genlib-vae-digits"
# (command, target seconds on the 2-core reference machine)
COMMANDS: list[tuple[list[str], float]] = [
    (["--help"], 1.5),
    (["models"], 1.5),
    (["datasets"], 1.5),
    (["registry", "list"], 5.0),
    (["report"], 5.0),
    (["promote", MODEL, "--version", "1"], 5.0),
]
# Metrics that pass the vae gates, so `promote` measures a successful (no-op) promotion.
METRICS = {"test_loss": 100.0, "test_sq_err_per_image": 10.0, "baseline_sq_err_per_image": 50.0, "test_mse": 0.01,
           "recognised": 0.99, "precision": 0.9, "fid": 5.0, "fid_real_floor": 1.0}


def seed_store(env: dict[str, str]) -> None:
    """One report run and one registered model (versions 1 and 2, champion on 1) in the scratch store."""
    code = f"""
import pandas as pd
from mlflow import MlflowClient
from genlib.tracking import configure_tracking, ensure_experiment
from genlib.tracking.registry import metric_tags
configure_tracking()
client = MlflowClient()
exp = ensure_experiment("digits")
from genlib.evaluation.report import EvaluationReport
from genlib.tracking.runs import log_report
run = client.create_run(exp, tags={{"genlib.kind": "report"}})
table = pd.DataFrame({{"model": ["vae"], "fid": [3.5], "recognised": [0.99], "precision": [0.9], "recall": [0.8]}})
log_report(EvaluationReport(tables={{"generative_quality": table}}), run.info.run_id)
client.set_terminated(run.info.run_id)
client.create_registered_model({MODEL!r}, tags={{"genlib.model": "vae", "genlib.dataset": "digits"}})
tags = {{"genlib.model": "vae", "genlib.dataset": "digits", "genlib.dataset_digest": "0" * 64,
        "genlib.gates": "passed", **metric_tags({METRICS!r})}}
for _ in range(2):
    client.create_model_version({MODEL!r}, f"runs:/{{run.info.run_id}}/tables", run_id=run.info.run_id, tags=tags)
client.set_registered_model_alias({MODEL!r}, "champion", "1")
client.set_registered_model_alias({MODEL!r}, "challenger", "2")
"""
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True)


def time_command(argv: list[str], env: dict[str, str], runs: int,
                 exe: str | None = None) -> tuple[list[float], list[float], int, str]:
    """Wall and CPU (user + system) seconds of ``runs`` fresh ``genlib ARGV`` processes, after one untimed
    warm-up; the last exit code and the first line of its output.

    CPU time is what the command costs whatever else runs; wall time is what a user waits (on a busy
    machine the two differ by the time spent waiting for a core)."""
    exe = exe or shutil.which("genlib", path=str(Path(sys.executable).parent)) or "genlib"
    walls, cpus, proc = [], [], None
    for i in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([exe, *argv], env=env, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i:  # the first run warms the page cache (and compiles bytecode where it is missing)
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    assert proc is not None
    first = (proc.stdout.strip() or proc.stderr.strip()).splitlines()[:1]
    return walls, cpus, proc.returncode, first[0] if first else ""


def render(results: list[dict], runs: int) -> str:
    from genlib.tables import format_table

    rows = [{"command": r.get("label") or "genlib " + " ".join(r["argv"]), "wall s (median)": round(r["median"], 2),
             "wall s (min-max)": f"{r['min']:.2f}-{r['max']:.2f}", "CPU s (median)": round(r["cpu"], 2),
             "target s": r["target"],
             "wall < target": None if r["target"] is None else "yes" if r["median"] < r["target"] else "no",
             "CPU < target": None if r["target"] is None else "yes" if r["cpu"] < r["target"] else "no",
             "exit": r["rc"]}
            for r in results]
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    head = (f"Median of {runs} fresh processes per command after one warm-up, {os.cpu_count()} CPU cores, "
            f"Python {platform.python_version()}, load average {load} (1/5/15 min) when it finished; "
            "`python -m bench.cli_latency --write-doc`. The listing commands import neither torch, prefect "
            "nor mlflow; the tracking commands import mlflow only and read a scratch sqlite store (one model "
            "with two versions, one report run). CPU s is the process's user + system time: the cost "
            "whatever else runs; wall s is what a user waits, which on a machine busier than its cores "
            "(load average above the core count) includes waiting for a core.")
    tail = ("The last row is a yardstick for the machine's state: at load average 1 it takes about 2.0 s wall. "
            "Before issue 11 (torch and mlflow imported up front) the same machine took 6.7 s for `genlib models`, "
            "7.0 s for `genlib datasets`, 11.6-27.9 s for `genlib registry list`, 12.8-23.6 s for `genlib report` "
            "and 6-12 s for `genlib promote`.")
    return f"{BEGIN}\n## CLI latency\n\n{head}\n\n{format_table(rows, style='markdown')}\n\n{tail}\n{END}"


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (default 5)")
    parser.add_argument("--write-doc", action="store_true", help="replace this section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="genlib-cli-latency-"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    env.update(GENLIB_MLFLOW_DIR=str(scratch / "mlflow"), PREFECT_HOME=str(scratch / "prefect"),
               GENLIB_CACHE_DIR=str(scratch / "cache"), OMP_NUM_THREADS="1")
    try:
        seed_store(env)
        results = []
        for argv_, target in COMMANDS:
            walls, cpus, rc, first = time_command(argv_, env, args.runs)
            results.append({"argv": argv_, "median": statistics.median(walls), "min": min(walls), "max": max(walls),
                            "cpu": statistics.median(cpus), "target": target, "rc": rc, "first": first})
            print(f"genlib {' '.join(argv_):<45} wall {results[-1]['median']:.2f}s  CPU {results[-1]['cpu']:.2f}s  "
                  f"(exit {rc}: {first[:50]})", flush=True)
        walls, cpus, rc, first = time_command(["-c", "import mlflow"], env, args.runs, exe=sys.executable)
        results.append({"argv": [], "label": "python -c 'import mlflow' (yardstick)", "median": statistics.median(walls),
                        "min": min(walls), "max": max(walls), "cpu": statistics.median(cpus), "target": None,
                        "rc": rc, "first": first})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    section = render(results, args.runs)
    print(section)
    if args.write_doc:
        write_doc(section)


if __name__ == "__main__":
    main()
