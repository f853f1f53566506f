"""The local Prefect server: history kept in the project's Prefect home, reused when a long-lived one runs,
the UI's API URL following the port, and never outliving the command that started it.

Real ``prefect server start`` processes on loopback ports; each start costs seconds (tens on a busy
2-core machine, the first in a home more: it creates the database), so most of these are slow tests.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from genlib.ops import prefect_server as ps
from genlib.ops.processes import answers, free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project of its own: Prefect home, stack state and MLflow store under tmp_path."""
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("GENLIB_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("GENLIB_STACK_DIR", str(tmp_path / ".genlib"))
    monkeypatch.setenv("GENLIB_MLFLOW_DIR", str(tmp_path / "mlflow"))
    return tmp_path


def _env(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    # INFO: the history test reads "Finished in state" logs, which tests.services (a plugin when test_flows
    # is in the same session) would filter out with PREFECT_LOGGING_LEVEL=WARNING.
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="INFO", **extra)
    return env


def _group_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


# --- without a server ----------------------------------------------------------------------------------


def test_the_project_home_is_local_unless_prefect_home_is_set(project, monkeypatch):
    assert ps.project_home() == (project / ".genlib" / "prefect").resolve()
    monkeypatch.setenv("PREFECT_HOME", str(project / "elsewhere"))
    assert ps.project_home() == (project / "elsewhere").resolve()


def test_the_ui_api_url_follows_the_port_in_the_server_environment(tmp_path):
    env = ps.server_env(tmp_path, 4255)
    assert env["PREFECT_UI_API_URL"] == env["PREFECT_API_URL"] == "http://127.0.0.1:4255/api"
    assert env["PREFECT_SERVER_API_PORT"] == "4255" and env["PREFECT_HOME"] == str(tmp_path)


def test_no_running_server_without_a_live_record(project):
    home = ps.use_project_home()
    assert ps.running_server(home) is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ps.write_record(home, f"http://127.0.0.1:{free_port(0)}/api", dead.pid)
    assert ps.running_server(home) is None  # recorded, but its process is gone
    ps.write_record(home, f"http://127.0.0.1:{free_port(0)}/api", os.getpid())
    assert ps.running_server(home) is None  # alive, but nothing answers there
    ps.clear_record(home, os.getpid())
    assert ps.read_record(home) is None


# --- a real server --------------------------------------------------------------------------------------

_HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from genlib.ops.prefect_server import LocalServer
    from genlib.ops.processes import terminate_as_interrupt
    with terminate_as_interrupt(), LocalServer(Path(sys.argv[1]), ui=True) as server:
        server.wait_ready()
        print(server.proc.pid, server.api_url, flush=True)
        if sys.argv[2] == "error":
            raise RuntimeError("boom")
        time.sleep(600)
""")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("ending", [
    "sigterm",
    pytest.param("error", marks=pytest.mark.slow),
    pytest.param("sigkill", marks=pytest.mark.slow),
])
def test_a_started_server_never_outlives_its_command(ending, project):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(project / "home"), ending], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(project), cwd=project)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, proc.stderr.read()  # type: ignore[union-attr]
        pid, api_url = line.split()
        assert ps.healthy(api_url) and not api_url.endswith(":4200/api")
        # The UI it serves talks to this port's API, not Prefect's default one.
        assert _get_json(api_url.removesuffix("/api") + "/ui-settings")["api_url"] == api_url  # type: ignore[index]
        if ending != "error":
            proc.send_signal(signal.SIGTERM if ending == "sigterm" else signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert _group_gone(int(pid)), f"the server's process group {pid} outlived its command ({ending})"
    assert not ps.healthy(api_url)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_pipeline_history_outlives_its_temporary_server_and_genlib_ui_serves_it(project):
    """`genlib pipeline` on a temporary server, then `genlib ui` on other ports: the UI lists the run, its task
    runs and its logs, its API URL follows the port, and a pipeline started meanwhile would reuse it."""
    env = _env(project, GENLIB_CACHE_DIR=str(project / "cache"))
    # Two families: on a CPU they train in two worker processes, whose task runs reach the same history.
    run = subprocess.run([sys.executable, "-m", "genlib.cli", "pipeline", "--models", "ae,dae", "--epochs", "1",
                          "--no-suite", "--n-train", "300", "--device", "cpu"],
                         capture_output=True, text=True, env=env, cwd=project, timeout=900)
    assert run.returncode in (0, 2), run.stderr[-3000:]  # 2: the 1-epoch model may fail its gate
    home = project / ".genlib" / "prefect"
    assert "this run's history is in" in run.stdout and (home / "prefect.db").is_file()

    prefect_port, mlflow_port = free_port(0), free_port(0)
    ui = subprocess.Popen([sys.executable, "-m", "genlib.cli", "ui", "--prefect-port", str(prefect_port),
                           "--mlflow-port", str(mlflow_port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=project)
    try:
        urls: dict[str, str] = {}
        while len(urls) < 2:  # the two "<name> UI: <url>" lines (the experiments' links are printed between)
            line = ui.stdout.readline()  # type: ignore[union-attr]
            assert line, ui.stderr.read()[-3000:]  # type: ignore[union-attr]
            if " UI: " in line:
                name, url = line.strip().split(" UI: ")
                urls[name] = url
        assert urls == {"MLflow": f"http://127.0.0.1:{mlflow_port}", "Prefect": f"http://127.0.0.1:{prefect_port}"}
        api = f"http://127.0.0.1:{prefect_port}/api"
        assert _get_json(f"http://127.0.0.1:{prefect_port}/ui-settings")["api_url"] == api  # type: ignore[index]
        assert ps.running_server(home) == api  # a pipeline now would report here

        runs = ps._post(f"{api}/flow_runs/filter", {"flows": {"name": {"any_": ["pipeline"]}}})
        assert [r["state_type"] for r in runs] == ["COMPLETED"]
        of_run = {"flow_runs": {"id": {"any_": [runs[0]["id"]]}}}
        task_runs = ps._post(f"{api}/task_runs/filter", of_run)
        names = {t["name"] for t in task_runs}
        assert {"fit_and_log-ae", "register_version-ae", "family-dae", "fit_and_log-dae"} <= names
        assert any(n.startswith("prepare_data") for n in names)
        assert all(t["state_type"] == "COMPLETED" for t in task_runs)
        logs = ps._post(f"{api}/logs/filter", {"logs": {"flow_run_id": {"any_": [runs[0]["id"]]}}})
        assert any("Finished in state" in log["message"] for log in logs), [log["message"][:80] for log in logs][:30]
        assert answers(f"http://127.0.0.1:{mlflow_port}/health")
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=60)
    assert not ps.healthy(api) and not answers(f"http://127.0.0.1:{mlflow_port}/health")
    assert ps.read_record(home) is None


# --- the empty database a new home starts from ----------------------------------------------------------


def test_a_home_is_seeded_only_when_it_has_no_database_and_uses_the_default_sqlite(tmp_path, monkeypatch):
    from genlib.ops import prefect_db

    monkeypatch.setenv("GENLIB_CACHE_DIR", str(tmp_path / "cache"))
    home = tmp_path / "home"
    home.mkdir()
    assert prefect_db.seed_home(home, {}) is False  # no template yet: snapshot this one once it answers
    template = prefect_db.template_path()
    assert template is not None and template.parent == tmp_path / "cache" / "prefect"
    template.parent.mkdir(parents=True)
    with sqlite3.connect(template) as db:
        db.execute("CREATE TABLE marker (x INTEGER)")
    assert prefect_db.seed_home(home, {"PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://x/y"}) is None
    assert not (home / "prefect.db").exists()
    assert prefect_db.seed_home(home, {}) is True
    with sqlite3.connect(home / "prefect.db") as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("marker",)]
    assert prefect_db.seed_home(home, {}) is None  # a database exists: left alone
    assert prefect_db.save_template(tmp_path / "no-home") is None


@pytest.mark.timeout(600)
def _post(url: str, body: dict) -> object:
    """ps._post, retrying a 503 as Prefect's own client does: a server that has just answered its health check
    may still hold its new database's lock for a moment."""
    import urllib.error

    for attempt in range(10):
        try:
            return ps._post(url, body)
        except urllib.error.HTTPError as err:
            if err.code != 503 or attempt == 9:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def test_a_new_home_starts_from_the_empty_database_the_first_server_left(tmp_path, monkeypatch):
    """The first server on a new home snapshots its database when it answers, before any run; a second new
    home is seeded from it, answers, and holds none of the first home's runs."""
    from genlib.ops import prefect_db

    monkeypatch.setenv("GENLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    with ps.LocalServer(tmp_path / "first", services=False) as first:
        first.wait_ready()
        template = prefect_db.template_path()
        assert template is not None and template.is_file()
        flow = _post(f"{first.api_url}/flows/", {"name": "made-in-the-first-home"})
        _post(f"{first.api_url}/flow_runs/", {"flow_id": flow["id"], "name": "first-run"})
        assert len(_post(f"{first.api_url}/flow_runs/filter", {})) == 1
    with sqlite3.connect(template) as db:  # migrated, and empty of runs
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()
        assert db.execute("SELECT count(*) FROM flow_run").fetchone() == (0,)
    second = ps.LocalServer(tmp_path / "second", services=False)
    with second:
        assert (tmp_path / "second" / "prefect.db").is_file()  # copied in before the server started
        second.wait_ready()
        assert _post(f"{second.api_url}/flow_runs/filter", {}) == []
        flow = _post(f"{second.api_url}/flows/", {"name": "made-in-the-second-home"})
        assert _post(f"{second.api_url}/flow_runs/", {"flow_id": flow["id"]})["flow_id"] == flow["id"]
