"""Schedules fire: Prefect's own scheduler creates the runs on the real stack (``genlib stack up``), a worker
takes them, they complete and register a version (``bench.soak``); ``genlib stack status`` shows the error
lines the stack's processes logged. The one-run check is in the default suite: a deployment that exists is
not a schedule that fires, and only a scheduled run shows it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench import soak
from genlib.ops import postgres
from genlib.ops.processes import error_lines, spawn


def test_error_lines_are_those_logged_since_the_process_started(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("06:00:00.000 | ERROR   | an earlier run's failure\n")
    record = spawn("server", [sys.executable, "-c", (
        "print('06:01:00.000 | INFO    | fine'); print('06:01:01.000 | ERROR   | prefect.server - it broke');"
        "print('Traceback (most recent call last):'); print('[2026-12-06 06:01:02 +0000] [7] [ERROR] gunicorn');"
        "print('ERROR:    Exception in ASGI application');"
        "print('2026-12-06 07:47:45.121 UTC [22098] ERROR:  duplicate key value violates unique constraint');"
        "print('2026-12-06 07:47:46.000 UTC [22099] FATAL:  the database system is shutting down');"
        "print('metric ERROR_rate 0')")], os.environ, tmp_path, tmp_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "metric" not in log.read_text():
        time.sleep(0.1)
    found = error_lines(record)
    assert found == ["06:01:01.000 | ERROR   | prefect.server - it broke", "Traceback (most recent call last):",
                     "[2026-12-06 06:01:02 +0000] [7] [ERROR] gunicorn", "ERROR:    Exception in ASGI application",
                     "2026-12-06 07:47:46.000 UTC [22099] FATAL:  the database system is shutting down"]
    assert error_lines({**record, "log": str(tmp_path / "missing.log")}) == []


def test_stack_status_lists_the_error_lines(tmp_path):
    """``genlib stack status`` reads the recorded logs: a process that logged errors is named with them."""
    folder = tmp_path / "genlib" / "stack"
    folder.mkdir(parents=True)
    (folder / "worker-cpu.log").write_text("old | ERROR   | before\nstarted\n06:02 | ERROR   | flow run crashed\n")
    (folder / "prefect-server.log").write_text("all good\n")
    state = {"started": "now", "prefect_url": "http://127.0.0.1:9", "mlflow_url": "http://127.0.0.1:9", "processes": [
        {"name": "prefect-server", "pid": 2**22 + 1, "log": str(folder / "prefect-server.log"), "log_offset": 0},
        {"name": "worker-cpu", "pid": 2**22 + 2, "log": str(folder / "worker-cpu.log"),
         "log_offset": len("old | ERROR   | before\n")}]}
    (folder / "stack.json").write_text(json.dumps(state))
    env = {**os.environ, "GENLIB_STACK_DIR": str(tmp_path / "genlib")}
    done = subprocess.run([sys.executable, "-m", "genlib.cli", "stack", "status"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "prefect-server  stopped, no errors" in done.stdout
    assert "worker-cpu      stopped, 1 error line in its log" in done.stdout and "flow run crashed" in done.stdout
    assert "before" not in done.stdout
    as_json = subprocess.run([sys.executable, "-m", "genlib.cli", "stack", "status", "--json"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert json.loads(as_json.stdout)["errors"] == {"prefect-server": [], "worker-cpu": ["06:02 | ERROR   | flow run crashed"]}


def _assert_soak(result: dict, runs: int) -> None:
    failed = {k: v for k, v in result["checks"].items() if not v}
    assert not failed, (failed, json.dumps({k: result[k] for k in ("mlflow", "error_lines", "left_behind")},
                                           default=str)[:4000])
    assert result["nightly_scheduled"] >= 1 and result["nightly_wait_s"] < 120
    assert [len(r["versions"]) for r in result["mlflow"]["runs"]] == [1] * runs
    assert result["mlflow"]["versions"] == runs


@pytest.fixture
def shared_folder():
    """A scratch folder the ``postgres`` user can reach (pytest's own are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="genlib-schedule-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


needs_postgres = pytest.mark.skipif(postgres.bindir() is None, reason="PostgreSQL is not installed "
                                    "(.ci/run installs Debian's postgresql)")


@needs_postgres
def test_the_scheduler_starts_a_run_that_a_worker_completes_and_registers(shared_folder):
    """After ``genlib stack up --prefect-db postgresql``: the nightly deployment has runs on the calendar, and a
    deployment with a short interval schedule gets a run made by Prefect's scheduler, which the cpu worker
    completes (training on the gpu pool's worker), registering a version; no error line in any log (PostgreSQL,
    not SQLite: there the workers' heartbeats log 'database is locked' now and then); down leaves nothing."""
    result = soak.soak(runs=1, interval=30, folder=shared_folder, echo=lambda _: None, prefect_db="postgresql")
    _assert_soak(result, 1)
    assert "postgres" in result["memory_start_mb"]


@pytest.mark.slow
@pytest.mark.parametrize("prefect_db", ["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def test_soak_three_scheduled_runs(shared_folder, prefect_db):
    """``python -m bench.soak --runs 3``: three one-minute slots, each completed with its runs and version; the
    champion is the best version that passed its gates. On SQLite the heartbeat lines may appear, and are the
    only error lines allowed there."""
    result = soak.soak(runs=3, interval=60, folder=shared_folder, echo=lambda _: None, prefect_db=prefect_db)
    if prefect_db == "sqlite":
        lines = [line for lines in result["error_lines"].values() for line in lines]
        records = [line for line in lines if not line.startswith("Traceback")]
        assert all("Worker channel heartbeat persistence failed" in line for line in records), records
        assert len(lines) - len(records) == 2 * len(records), lines  # each: one chained traceback
        result["checks"]["no error lines in any log"] = True
    _assert_soak(result, 3)
