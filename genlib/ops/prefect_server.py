"""The Prefect server a command's flows report to, with its history kept in the project.

Which API a run uses, in order: ``PREFECT_API_URL`` when configured; else the project's long-lived server
when one answers (the stack's, ``genlib stack up``, or the one ``genlib ui`` keeps while it is open); else a
temporary server started here. Every server genlib starts uses the project-local Prefect home
(``<project>/.genlib/prefect``, git-ignored; ``$PREFECT_HOME`` wins when set), so its database, and with it
the run history, outlives the server: ``genlib ui`` afterwards shows each pipeline run, its task runs and
its logs. A started server leads its own process group, dies with the process that started it (even
on SIGKILL: the kernel's parent-death signal) and is stopped on every exit path.

Nothing here imports prefect: servers are ``prefect server start`` processes, asked over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genlib.errors import GenlibError
from genlib.ops.prefect_db import save_template, seed_home
from genlib.ops.processes import answers, executable, free_port, launch, pid_alive, stop_group, wait_http
from genlib.ops.project import prefect_home, project_dir
from genlib.ops.stack import load_state

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
UI_RECORD = "genlib-ui.json"  # in the Prefect home: the server `genlib ui` keeps while it runs
_OPEN = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING")  # task run states not yet final


def project_home() -> Path:
    """``$PREFECT_HOME`` when set, else the project-local home the stack uses too."""
    env = os.environ.get("PREFECT_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return prefect_home(project_dir())


def use_project_home() -> Path:
    """Point this process (and its children) at the project's Prefect home; call before importing prefect."""
    home = project_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(home)
    # No telemetry calls from servers started here (this machine may be offline).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return home


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True when the Prefect API at ``api_url`` (``http://host:port/api``) answers its health check."""
    return answers(api_url.rstrip("/") + "/health", timeout=timeout)


def running_server(home: Path | None = None) -> str | None:
    """The API URL of the project's long-lived Prefect server when one answers, else None.

    Looks at the stack's record first, then at the one ``genlib ui`` writes into the Prefect home.
    """
    candidates: list[str] = []
    with contextlib.suppress(OSError, KeyError, TypeError):
        state = load_state(project_dir())
        if state and state.get("prefect_url"):
            candidates.append(state["prefect_url"].rstrip("/") + "/api")
    record = read_record(home or project_home())
    if record is not None and pid_alive(int(record.get("pid", 0))):
        candidates.append(record["api_url"])
    return next((url for url in candidates if healthy(url)), None)


def read_record(home: Path) -> dict[str, Any] | None:
    try:
        return json.loads((home / UI_RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_record(home: Path, api_url: str, pid: int) -> None:
    """Say that the server at ``api_url`` (process ``pid``) serves this home, so runs reuse it."""
    tmp = home / f".{UI_RECORD}.tmp"
    tmp.write_text(json.dumps({"api_url": api_url, "pid": pid}))
    tmp.replace(home / UI_RECORD)


def clear_record(home: Path, pid: int) -> None:
    record = read_record(home)
    if record is not None and record.get("pid") == pid:
        with contextlib.suppress(OSError):
            (home / UI_RECORD).unlink()


def server_env(home: Path, port: int, host: str = HOST, *, ui: bool = True,
               base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of a ``prefect server start`` on ``host:port`` with ``home``.

    The UI's API URL follows the port (Prefect derives it from its default port 4200 otherwise, and
    the UI served on another port cannot reach its API).
    """
    api_url = f"http://{host}:{port}/api"
    env = dict(os.environ if base is None else base)
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=api_url, PREFECT_UI_API_URL=api_url,
               PREFECT_SERVER_API_HOST=host, PREFECT_SERVER_API_PORT=str(port),
               PREFECT_SERVER_UI_ENABLED="true" if ui else "false",
               PREFECT_SERVER_ANALYTICS_ENABLED=env.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false"))
    return env


class LocalServer:
    """A ``prefect server start`` this process owns: started in its own process group, stopped with it.

    Use as a context manager (``start`` on enter, ``stop`` on exit, whatever the exit). ``start`` returns
    at once; ``wait_ready`` blocks until the API answers, so the caller can do other work meanwhile.
    """

    def __init__(self, home: Path, port: int = 0, *, host: str = HOST, ui: bool = False,
                 services: bool = True, log_name: str = "server.log") -> None:
        self.home, self.host, self.ui, self.services = Path(home), host, ui, services
        self.port = free_port(port, host)
        self.log_path = self.home / log_name
        self.proc: subprocess.Popen | None = None
        self._snapshot = False  # a new home's database, to keep as the template once the server answers

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def start(self) -> str:
        """Start the server (not yet answering); returns its API URL."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = server_env(self.home, self.port, self.host, ui=self.ui)
        if not self.services:  # a temporary server schedules nothing (deployments may live in this home)
            env.update(PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
                       PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
                       # nor registers Prefect's block types (genlib uses none): CPU a new home's start-up would spend
                       PREFECT_API_BLOCKS_REGISTER_ON_START="false")
        # A new home starts from the cached empty database rather than 114 migrations (genlib/ops/prefect_db.py).
        self._snapshot = seed_home(self.home, env) is False
        self.proc = launch([executable("prefect"), "server", "start", "--host", self.host, "--port", str(self.port)],
                           env, self.log_path, self.home, tied=True)
        logger.info("started a Prefect server at %s (pid %d, home %s)", self.url, self.proc.pid, self.home)
        return self.api_url

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Block until the API answers; raises GenlibError (with the end of the server's log) if it does not."""
        assert self.proc is not None, "start() first"
        if wait_http(self.api_url + "/health", timeout, self.proc):
            if self._snapshot:  # answered, and no run recorded yet: the empty database for later homes
                self._snapshot = False
                save_template(self.home)
            return
        tail = ""
        with contextlib.suppress(OSError):
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
            tail = f": {lines[-1].strip()}" if lines else ""
        state = f"exited with {self.proc.returncode}" if self.proc.poll() is not None else f"no answer in {timeout:.0f} s"
        raise GenlibError(f"the Prefect server at {self.url} did not start ({state}; log {self.log_path}){tail}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            logger.info("stopped the Prefect server at %s", self.url)
            self.proc = None

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _post(url: str, body: Mapping[str, Any], timeout: float = 5.0) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our loopback server
        return json.loads(response.read() or b"null")


def wait_until_recorded(api_url: str, flow_run_id: str, timeout: float = 15.0) -> bool:
    """Wait until the server has recorded every task run of flow run ``flow_run_id``; True when it settled.

    Prefect 3 clients report task runs as events that the server's recorder writes to its database a
    moment later: a temporary server stopped right after a run would lose the last ones.
    """
    of_run = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            total = _post(f"{api_url}/task_runs/count", of_run)
            unfinished = _post(f"{api_url}/task_runs/count",
                               {**of_run, "task_runs": {"state": {"type": {"any_": list(_OPEN)}}}})
        except OSError:
            return False
        if unfinished == 0 and total == last:
            return True
        last = total
        time.sleep(0.25)  # the recorder writes what was sent in batches: a count unchanged over a step has settled
    return False
