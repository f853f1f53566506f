"""The stack as it runs day after day: ``python -m bench.soak [--runs N] [--interval S]``.

Starts the stack (``genlib stack up``: Prefect and MLflow servers, the cpu and gpu workers, ``prefect deploy
--all``) on free ports with its state and stores in a scratch folder, then:

1. checks that Prefect's scheduler has put the nightly ``pipeline/pipeline`` runs on the calendar;
2. adds a deployment ``pipeline/soak`` (the pipeline deployment's source, pool and pull step) with an interval
   schedule and a tiny pipeline (digits, one family, no suite, ``retrain``), so that every slot trains,
   evaluates and registers a new version;
3. waits until the scheduler has created ``--runs`` flow runs of it and the workers have finished them, then
   pauses it;
4. checks: every run was created by the scheduler and completed; each has its MLflow pipeline run (with its
   train and evaluation runs) and exactly one new registry version; the champion is the best version that
   passed its gates; no error line in any server's or worker's log; the resident memory of each process
   group at the start and the end; ``genlib stack down`` leaves no process behind.

Writes ``bench/results/soak.json`` and prints the table row for docs/benchmarks.md. Exit status 1 when a check
failed. Imports prefect and mlflow (clients of the stack it starts).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOAK_DEPLOYMENT = "soak"
FAMILY = "ae"
DATASET = "digits"
# Small enough that one run takes well under a minute on two cores: the plumbing runs, not the maths.
TINY_EVAL = {"fid_samples": 100, "classifier_epochs": 4, "is_splits": 2, "iwae_k": 4, "iwae_chunk": 4,
             "elbo_samples": 1, "likelihood_images": 50, "ais_chains": 4, "ais_betas": 20}
TINY_PIPELINE = {"data": {"dataset": DATASET, "n_train": 1000, "n_val": 100, "n_test": 200}, "models": [FAMILY],
                 "profile": "quick", "dispatch": "auto", "suite": False, "train_overrides": {"epochs": 20},
                 "eval_overrides": TINY_EVAL, "retrain": True}
_FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stack_env(folder: Path, **extra: str) -> dict[str, str]:
    """Environment of a stack whose state, Prefect home and MLflow store all live in ``folder``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(GENLIB_STACK_DIR=str(folder / "genlib"), MLFLOW_BACKEND_STORE_URI=f"sqlite:///{folder / 'mlflow.db'}",
               MLFLOW_ARTIFACTS_DESTINATION=str(folder / "artifacts"), OMP_NUM_THREADS="1",
               PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               GENLIB_PROJECT_DIR=str(ROOT), **extra)
    return env


def genlib(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genlib.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in process group ``pgid`` (MiB)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of /proc/PID/stat: the process group
                total += int((entry / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def memory(state: dict[str, Any]) -> dict[str, float]:
    return {r["name"]: round(group_rss_mb(int(r["pid"])), 1) for r in state["processes"]}


def add_soak_deployment(client: Any, interval: float) -> Any:
    """``pipeline/soak``: the nightly deployment's flow, source, pool and pull step with the tiny pipeline and an
    interval schedule whose first slot is a few seconds away."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import IntervalSchedule

    nightly = client.read_deployment_by_name("pipeline/pipeline")
    anchor = datetime.now(timezone.utc) + timedelta(seconds=5)
    schedule = IntervalSchedule(interval=timedelta(seconds=interval), anchor_date=anchor)
    deployment_id = client.create_deployment(
        flow_id=nightly.flow_id, name=SOAK_DEPLOYMENT, parameters={"params": TINY_PIPELINE},
        description="bench.soak: the tiny pipeline on an interval schedule", work_pool_name=nightly.work_pool_name,
        work_queue_name=nightly.work_queue_name, path=nightly.path, entrypoint=nightly.entrypoint,
        pull_steps=nightly.pull_steps, job_variables=nightly.job_variables, tags=["genlib", "soak"],
        parameter_openapi_schema=nightly.parameter_openapi_schema,
        enforce_parameter_schema=nightly.enforce_parameter_schema,
        schedules=[DeploymentScheduleCreate(schedule=schedule, active=True)])
    return client.read_deployment(deployment_id)


def deployment_runs(client: Any, deployment_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                                 limit=200)
    return sorted(runs, key=lambda r: r.expected_start_time or r.created)


def nightly_scheduled(client: Any, timeout: float) -> tuple[int, float]:
    """How many nightly runs the scheduler has put on the calendar, and how many seconds that took."""
    nightly = client.read_deployment_by_name("pipeline/pipeline")
    t0 = time.monotonic()
    while True:
        runs = [r for r in deployment_runs(client, nightly.id) if r.auto_scheduled and r.state_type.value == "SCHEDULED"]
        if runs or time.monotonic() - t0 > timeout:
            return len(runs), time.monotonic() - t0
        time.sleep(2)


def wait_for_runs(client: Any, deployment: Any, n: int, timeout: float, echo: Any) -> list[Any]:
    """The first ``n`` runs the scheduler made of ``deployment``, once all are final (the schedule paused once
    ``n`` exist, so no more follow)."""
    deadline = time.monotonic() + timeout
    paused, seen = False, -1
    while time.monotonic() < deadline:
        runs = [r for r in deployment_runs(client, deployment.id) if r.auto_scheduled]
        started = [r for r in runs if r.state_type.value != "SCHEDULED"]
        if not paused and len(started) >= n:
            client.pause_deployment(deployment.id)  # also removes its runs still on the calendar
            paused = True
        done = [r for r in started[:n] if r.state_type.value in _FINAL]
        if len(done) != seen:
            seen = len(done)
            echo(f"  {time.strftime('%H:%M:%S')} {seen}/{n} scheduled runs final")
        if paused and len(done) == n:
            return started[:n]
        time.sleep(3)
    return [r for r in deployment_runs(client, deployment.id) if r.auto_scheduled][:n]


def mlflow_checks(tracking_uri: str, flow_runs: list[Any]) -> dict[str, Any]:
    """Per flow run: its pipeline run, the train and evaluation runs under it and the versions they made;
    then whether the champion is the best version that passed its gates."""
    from mlflow import MlflowClient

    from genlib.models.catalog import model_info
    from genlib.tracking import tags as T
    from genlib.tracking.registry import registered_model_name
    from genlib.tracking.version_notes import read_gates

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    name = registered_model_name(FAMILY, DATASET)
    versions = client.search_model_versions(f"name='{name}'")
    by_run = {v.run_id: v for v in versions}
    per_run = []
    for fr in flow_runs:
        parents = client.search_runs(experiments, f"tags.`{T.PREFECT_FLOW_RUN_ID}` = '{fr.id}' and "
                                                  f"tags.`{T.KIND}` = 'pipeline'")
        children = client.search_runs(experiments, f"tags.`{T.MLFLOW_PARENT_RUN_ID}` = "
                                                   f"'{parents[0].info.run_id}'") if parents else []
        kinds = sorted(c.data.tags.get(T.KIND, "?") for c in children)
        made = [by_run[c.info.run_id].version for c in children if c.info.run_id in by_run]
        per_run.append({"flow_run": fr.name, "state": fr.state_type.value, "pipeline_run": bool(parents),
                        "pipeline_status": parents[0].info.status if parents else None, "child_kinds": kinds,
                        "versions": made})
    info = model_info(FAMILY)
    key, lower = info.primary_metric, info.primary_metric_lower_is_better
    scored = []
    for v in versions:
        gates = read_gates(v.tags) or {}
        eval_run = v.tags.get(T.EVAL_RUN_ID)
        value = client.get_run(eval_run).data.metrics.get(key) if eval_run else None
        scored.append({"version": int(v.version), "passed": gates.get("status") == "passed", key: value})
    passed = [s for s in scored if s["passed"] and s[key] is not None and math.isfinite(s[key])]
    # Champion moves only on a strict improvement: the best value's earliest version holds it.
    best = min(passed, key=lambda s: ((s[key] if lower else -s[key]), s["version"])) if passed else None
    try:
        champion = int(client.get_model_version_by_alias(name, "champion").version)
    except Exception:  # noqa: BLE001 - no alias set
        champion = None
    return {"runs": per_run, "versions": len(versions), "primary_metric": key, "scored": scored,
            "champion": champion, "best_passed": best["version"] if best else None}


def soak(runs: int = 30, interval: float = 60.0, folder: Path | None = None, echo: Any = print,
         prefect_db: str = "sqlite") -> dict[str, Any]:
    """Run the soak; returns the measurements and ``checks`` (name -> bool)."""
    folder = Path(folder or tempfile.mkdtemp(prefix="genlib-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # a PostgreSQL cluster inside runs as the postgres user
    pp, mp = free_port(), free_port()
    env = stack_env(folder)
    t0 = time.monotonic()
    up = genlib(["stack", "up", "--prefect-port", str(pp), "--mlflow-port", str(mp), "--prefect-db", prefect_db], env)
    if up.returncode != 0:
        raise SystemExit(f"error: genlib stack up failed: {(up.stderr or up.stdout).strip()[-500:]}")
    result: dict[str, Any] = {"runs_asked": runs, "interval_s": interval, "prefect_db": prefect_db,
                              "up_s": round(time.monotonic() - t0, 1),
                              "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    state = json.loads((folder / "genlib" / "stack" / "stack.json").read_text())
    try:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        api = f"http://127.0.0.1:{pp}/api"
        os.environ["PREFECT_API_URL"] = api
        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            result["nightly_scheduled"], result["nightly_wait_s"] = nightly_scheduled(client, 120)
            result["memory_start_mb"] = memory(state)
            echo(f"stack up in {result['up_s']} s; {result['nightly_scheduled']} nightly runs scheduled after "
                 f"{result['nightly_wait_s']:.0f} s; memory {result['memory_start_mb']}")
            deployment = add_soak_deployment(client, interval)
            t_runs = time.monotonic()
            flow_runs = wait_for_runs(client, deployment, runs, timeout=runs * interval + 900, echo=echo)
            result["runs_wall_s"] = round(time.monotonic() - t_runs, 1)
            durations = [(r.end_time - r.start_time).total_seconds() for r in flow_runs if r.end_time and r.start_time]
            lateness = [(r.start_time - r.expected_start_time).total_seconds() for r in flow_runs
                        if r.start_time and r.expected_start_time]
            result["run_seconds"] = sorted(round(d, 1) for d in durations)
            result["start_late_seconds"] = sorted(round(x, 1) for x in lateness)
        time.sleep(5)  # let the workers' last lines reach their logs
        result["memory_end_mb"] = memory(state)
        result["mlflow"] = mlflow_checks(f"http://127.0.0.1:{mp}", flow_runs)
        status = genlib(["stack", "status", "--json"], env)
        result["error_lines"] = json.loads(status.stdout)["errors"] if status.returncode == 0 else {"status": [status.stderr]}
    finally:
        down = genlib(["stack", "down"], env)
        time.sleep(1)
        result["left_behind"] = [r["name"] for r in state["processes"] if group_alive(int(r["pid"]))]
        result["down_ok"] = down.returncode == 0
    per_run = result["mlflow"]["runs"]
    result["checks"] = {
        "runs created by the scheduler": len(flow_runs) == runs,
        "every run completed": all(r.state_type.value == "COMPLETED" for r in flow_runs),
        "each has its MLflow runs": all(r["pipeline_status"] == "FINISHED" and {"evaluation", "train"} <= set(r["child_kinds"])
                                        for r in per_run),
        "each made one registry version": all(len(r["versions"]) == 1 for r in per_run),
        "champion is the best passed version": result["mlflow"]["champion"] == result["mlflow"]["best_passed"],
        "no error lines in any log": not any(result["error_lines"].values()),
        "nightly runs scheduled": result["nightly_scheduled"] > 0,
        "down leaves no process": result["down_ok"] and not result["left_behind"],
    }
    return result


def table_row(r: dict[str, Any]) -> str:
    med = sorted(r["run_seconds"])[len(r["run_seconds"]) // 2] if r["run_seconds"] else float("nan")
    failed = [k for k, ok in r["checks"].items() if not ok]
    mem = ", ".join(f"{k} {r['memory_start_mb'][k]:.0f}->{r['memory_end_mb'].get(k, 0):.0f}" for k in r["memory_start_mb"])
    return (f"| {r['started']} | {r['prefect_db']} | {r['runs_asked']} x {r['interval_s']:.0f} s | "
            f"{sum(x['state'] == 'COMPLETED' for x in r['mlflow']['runs'])}/{r['runs_asked']} | "
            f"{med:.0f} s (max {max(r['run_seconds'], default=float('nan')):.0f}) | {r['mlflow']['versions']} | "
            f"v{r['mlflow']['champion']} / v{r['mlflow']['best_passed']} | "
            f"{sum(len(v) for v in r['error_lines'].values())} | {mem} MiB | "
            f"{'all passed' if not failed else 'FAILED: ' + '; '.join(failed)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="scheduled runs to wait for (default 30)")
    parser.add_argument("--interval", type=float, default=60.0, help="schedule interval in seconds (default 60)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--prefect-db", choices=["sqlite", "postgresql"], default="sqlite",
                        help="the stack's Prefect database (genlib stack up --prefect-db)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args(argv)
    if args.runs <= 0 or args.interval < 10:
        parser.error("--runs must be positive and --interval at least 10 seconds")
    result = soak(args.runs, args.interval, args.dir, prefect_db=args.prefect_db)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print("| started | Prefect database | schedule | completed | run time (median) | versions | champion / best passed | "
          "error lines | memory start->end | checks |")
    print(table_row(result))
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
