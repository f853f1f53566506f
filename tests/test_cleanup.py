"""Interrupted runs against a real MLflow server: stale RUNNING runs of dead processes are marked FAILED
with a note (live ones untouched), and SIGTERM/SIGINT end a process's runs as KILLED."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

pytest.register_assert_rewrite("tests.services")
from tests.services import ROOT

pytest_plugins = ["tests.services"]


def _run(client, experiment_id: str, pid: int, *, kind: str = "train", host: str | None = None,
         started_ms: int | None = None) -> str:
    from genlib.tracking import tags as T

    tags = {T.KIND: kind, T.HOST: host or socket.gethostname(), T.PID: str(pid)}
    return client.create_run(experiment_id, tags=tags, start_time=started_ms).info.run_id


def test_stale_runs_of_gone_processes_are_marked_failed_with_a_note(tracking):
    from mlflow import MlflowClient

    from genlib.tracking import tags as T
    from genlib.tracking.cleanup import mark_stale_runs

    client = MlflowClient()
    experiment_id = client.create_experiment(f"genlib-stale{uuid.uuid4().hex[:6]}")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        time.sleep(0.5)
        now = int(time.time() * 1000)
        runs = {
            "dead": _run(client, experiment_id, dead.pid),
            "dead_eval": _run(client, experiment_id, dead.pid, kind="evaluation"),
            "live": _run(client, experiment_id, live.pid, started_ms=now),
            "reused_pid": _run(client, experiment_id, live.pid, started_ms=now - 3_600_000),  # before it started
            "other_host": _run(client, experiment_id, dead.pid, host="some-other-host"),
            "not_genlib": _run(client, experiment_id, dead.pid, kind="somebody-else"),
            "mine": _run(client, experiment_id, os.getpid()),
        }
        marked = mark_stale_runs([experiment_id])
        again = mark_stale_runs([experiment_id])
    finally:
        live.kill()
        live.wait()
    assert sorted(marked) == sorted([runs["dead"], runs["dead_eval"], runs["reused_pid"]])
    status = {k: client.get_run(v).info.status for k, v in runs.items()}
    assert status == {"dead": "FAILED", "dead_eval": "FAILED", "live": "RUNNING", "reused_pid": "FAILED",
                      "other_host": "RUNNING", "not_genlib": "RUNNING", "mine": "RUNNING"}
    note = client.get_run(runs["dead"]).data.tags[T.MLFLOW_RUN_NOTE]
    assert f"PID {dead.pid}" in note and "had gone" in note
    assert again == []  # idempotent


_SIGNALLED = r"""
import signal, sys, time
# A shell's background job starts with SIGINT ignored (as under `nohup make test &`); a user's Ctrl-C
# reaches a foreground process, whose SIGINT raises KeyboardInterrupt: give the child that.
signal.signal(signal.SIGINT, signal.default_int_handler)
import mlflow
from genlib.tracking.cleanup import end_runs_on_signal
from genlib.tracking.runs import standard_tags
uri, experiment = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(uri)
experiment_id = mlflow.MlflowClient().get_experiment_by_name(experiment).experiment_id
assert end_runs_on_signal()
with mlflow.start_run(experiment_id=experiment_id, tags=standard_tags("train")) as run:
    print(run.info.run_id, flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_processs_runs_as_killed(tracking, signum):
    from mlflow import MlflowClient

    from genlib.tracking import tags as T

    client = MlflowClient()
    name = f"genlib-signal{uuid.uuid4().hex[:6]}"
    client.create_experiment(name)
    proc = subprocess.Popen([sys.executable, "-c", _SIGNALLED, tracking, name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read()[-2000:]
    assert client.get_run(run_id).info.status == "RUNNING"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    run = client.get_run(run_id)
    assert run.info.status == "KILLED", err[-2000:]
    assert signal.Signals(signum).name in run.data.tags[T.MLFLOW_RUN_NOTE]
