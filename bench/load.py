"""Load: N concurrent tiny pipelines against one MLflow tracking server and one Prefect server.

    python -m bench.load                          # N = 2, 4, 8 on sqlite stores; writes docs/benchmarks.md
    python -m bench.load --backend postgresql     # both servers on a throw-away PostgreSQL cluster
    python -m bench.load --n 2 --no-write         # a quick look, nothing written

Each pipeline is a separate ``genlib pipeline`` process (the ae family on its own digits subset, so no
two share a cache key, all registering versions of the same ``genlib-ae-digits``). Per N it reports wall
time, runs created, versions registered, errors, and checks that nothing was lost: every pipeline's
train and evaluation runs exist and finished, every version it reported exists on its run, the
aliases point at real versions and ``champion`` is the best version that passed its gates.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from genlib.ops.processes import free_port, launch, stop_group, wait_http

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- load:begin -->", "<!-- load:end -->"
MODEL = "genlib-ae-digits"


def _wait(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    if not wait_http(url, timeout, proc):
        raise RuntimeError(f"{url} did not answer within {timeout} s (or its server exited: {proc.poll()})")


def start_postgres(folder: Path) -> tuple[subprocess.Popen, int]:
    """A throw-away cluster in ``folder`` (genlib.ops.postgres: the stack's own, trust auth on loopback) with
    databases ``mlflow`` and ``prefect``; returns the server process and its port."""
    from genlib.ops import postgres

    if postgres.bindir() is None:
        raise SystemExit("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    folder.chmod(0o755)  # the cluster runs as the postgres user
    postgres.ensure_cluster(folder / "pg")
    port = free_port(0)
    # Servers here die with this process too (tied): a killed benchmark leaves none behind.
    proc = launch(postgres.server_argv(folder / "pg", port), os.environ, folder / "postgres.log", ROOT, tied=True)
    for _ in range(240):
        if postgres.ready(port):
            break
        time.sleep(0.5)
    for db in ("mlflow", "prefect"):
        postgres.ensure_database(port, db)
    return proc, port


def start_servers(folder: Path, backend: str) -> tuple[list[subprocess.Popen], str, str]:
    """MLflow (mlflow/serve.sh, 2 workers) and Prefect servers on ``backend``; returns (processes, MLflow URI,
    Prefect API URL)."""
    procs: list[subprocess.Popen] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(PREFECT_HOME=str(folder / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    mlflow_env = {**env, "MLFLOW_ARTIFACTS_DESTINATION": str(folder / "artifacts"),
                  "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    if backend == "postgresql":
        pg, port = start_postgres(folder)
        procs.append(pg)
        mlflow_env["MLFLOW_BACKEND_STORE_URI"] = f"postgresql+psycopg2://genlib@127.0.0.1:{port}/mlflow"
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"postgresql+asyncpg://genlib@127.0.0.1:{port}/prefect"
    mp, pp = free_port(0), free_port(0)
    mlflow_env.update(MLFLOW_PORT=str(mp), MLFLOW_BIN=str(BIN / "mlflow"))
    procs.append(launch(["bash", str(ROOT / "mlflow" / "serve.sh")], mlflow_env, folder / "mlflow.log", ROOT, tied=True))
    procs.append(launch([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(pp)], env,
                        folder / "prefect.log", ROOT, tied=True))
    _wait(f"http://127.0.0.1:{mp}/health", procs[-2])
    _wait(f"http://127.0.0.1:{pp}/api/health", procs[-1])
    return procs, f"http://127.0.0.1:{mp}", f"http://127.0.0.1:{pp}/api"


def run_round(n: int, offset: int, mlflow_uri: str, prefect_api: str, folder: Path) -> dict[str, Any]:
    """N pipelines at once; returns the figures and what the checks found."""
    from mlflow import MlflowClient

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=mlflow_uri, PREFECT_API_URL=prefect_api, OMP_NUM_THREADS="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(folder / "prefect-client"))
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    before_versions = {v.version for v in client.search_model_versions(f"name='{MODEL}'")}
    t0 = time.time()
    procs = []
    for i in range(n):
        argv = [str(BIN / "genlib"), "pipeline", "--dataset", "digits", "--models", "ae", "--n-train",
                str(300 + offset + i), "--epochs", "1", "--no-suite", "--dispatch", "local", "--device", "cpu", "--json"]
        procs.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outputs = [p.communicate(timeout=3600) for p in procs]
    wall = time.time() - t0
    errors, reported = [], []
    for p, (out, err) in zip(procs, outputs):
        try:
            result = json.loads(out[out.index("{"):])
            family = result["families"][0]
            if family.get("error") or not family.get("registration"):
                errors.append(family.get("error") or "no registration")
            else:
                reported.append(family)
        except ValueError:
            errors.append((err.strip().splitlines() or [f"exit {p.returncode}"])[-1][:200])
    experiments = [e.experiment_id for e in client.search_experiments(filter_string="name LIKE 'genlib-%'")]
    runs = client.search_runs(experiments, f"attributes.start_time >= {int(t0 * 1000)}", max_results=5000)
    versions = {v.version: v for v in client.search_model_versions(f"name='{MODEL}'")}
    new_versions = set(versions) - before_versions
    lost = []
    for family in reported:
        for key in ("train", "evaluation"):
            run = client.get_run(family[key]["run_id"])
            if run.info.status != "FINISHED":
                lost.append(f"{key} run {run.info.run_id[:8]} {run.info.status}")
        version = versions.get(family["registration"]["version"])
        if version is None or version.run_id != family["train"]["run_id"] or version.status != "READY":
            lost.append(f"version {family['registration']['version']}")
    aliases = client.get_registered_model(MODEL).aliases if versions else {}
    lost += [f"@{a} -> missing version {v}" for a, v in aliases.items() if str(v) not in versions]
    passing = [v for v in versions.values() if json.loads(v.tags.get("genlib.gates", "{}")).get("status") == "passed"]
    from genlib.tracking.registry import metrics_from_tags

    best = min(passing, key=lambda v: metrics_from_tags(v.tags)["test_sq_err_per_image"]) if passing else None
    champion_ok = (best is None and "champion" not in aliases) or (best is not None and
                                                                   str(aliases.get("champion")) == best.version)
    return {"n": n, "wall_seconds": round(wall, 1), "runs_created": len(runs), "versions_registered": len(new_versions),
            "errors": len(errors), "error_lines": errors[:3], "lost": lost,
            "champion_is_best_passing": champion_ok, "pipelines_ok": len(reported)}


def render(rows: list[dict[str, Any]], backend: str, command: str) -> str:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from bench.common import _cpu_model

    cpu = _cpu_model()
    lines = [BEGIN, f"## Load: concurrent pipelines against one tracking server ({backend})", "",
             f"`{command}`, {when}, {os.cpu_count()} CPUs ({cpu}), backend {backend} for both servers "
             "(MLflow via mlflow/serve.sh with 2 workers, one Prefect server). Each pipeline: ae on its own "
             "digits subset, 1 epoch, no suite, as a separate `genlib pipeline` process; all register "
             f"`{MODEL}`. The 2-core machine was shared with other work while this ran, so the wall "
             "times are upper bounds; the counts are what matters.", "",
             "| N | wall (s) | runs created | versions registered | errors | lost | champion = best passing |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['wall_seconds']} | {r['runs_created']} | {r['versions_registered']} | "
                     f"{r['errors']} | {len(r['lost'])} | {'yes' if r['champion_is_best_passing'] else 'NO'} |")
    lines += ["", "Lost counts a pipeline's train or evaluation run that is missing or not FINISHED, a version it "
              "reported that is missing, not READY or on another run, and an alias on a missing version.", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[2, 4, 8], help="concurrent pipelines per round")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, stores)")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="genlib-load-"))
    procs, mlflow_uri, prefect_api = start_servers(folder, args.backend)
    rows = []
    try:
        offset = 0
        for n in args.n:
            row = run_round(n, offset, mlflow_uri, prefect_api, folder)
            offset += n
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        for proc in reversed(procs):
            stop_group(proc)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    command = "python -m bench.load " + " ".join(argv if argv is not None else sys.argv[1:])
    section = render(rows, args.backend, command.strip())
    print(section)
    if not args.no_write:
        from bench.common import update_benchmarks_doc

        marker = BEGIN if args.backend == "sqlite" else BEGIN.replace("load:", "load-postgresql:")
        end = END if args.backend == "sqlite" else END.replace("load:", "load-postgresql:")
        update_benchmarks_doc(DOC, section.replace(BEGIN, marker).replace(END, end), marker, end)
    bad = [r for r in rows if r["lost"] or r["errors"] or not r["champion_is_best_passing"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
