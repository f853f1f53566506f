"""The scheduled system on one machine: ``genlib stack up`` / ``down`` (``make up`` / ``make down``).

``up`` starts, each in its own process group with its log in ``<project>/.genlib/stack/``: a Prefect server
(home ``<project>/.genlib/prefect``, so its history survives), an MLflow tracking server on the embedded
store (``mlflow/serve.sh``: ``mlflow/mlflow.db`` and ``mlflow/artifacts``), a ``cpu`` and a ``gpu`` process
worker (each creates its pool when missing; the gpu worker's runs use CUDA when present, else the CPU),
then ``prefect deploy --all`` (``prefect.yaml``, with the nightly schedule). PIDs go to
``<project>/.genlib/stack/stack.json``; ``down`` stops exactly those process groups. A second ``up``
finds everything alive and answering and only prints the URLs.

Shared servers are locked: any host but loopback needs MLflow's basic-auth admin password
(``MLFLOW_AUTH_ADMIN_PASSWORD`` or ``MLFLOW_AUTH_ADMIN_PASSWORD_FILE``) and Prefect's
``PREFECT_SERVER_API_AUTH_STRING``; the workers get the matching client credentials.

Nothing here imports prefect or mlflow: they run as separate processes (genlib.ops.processes).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from genlib.errors import ConfigError, GenlibError
from genlib.ops.prefect_db import save_template, seed_home
from genlib.ops.processes import (alive, error_lines, executable, free_port, http_status, port_free, spawn,
                                  stop_group, wait_until)
from genlib.ops.project import prefect_home, state_dir

POOLS = ("cpu", "gpu")
STATE_FILE = "stack.json"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class StackSettings(BaseModel):
    """Where the stack binds and what it deploys."""

    model_config = ConfigDict(frozen=True)

    project: Path = Field(description="the checkout the workers run flows from (GENLIB_PROJECT_DIR)")
    host: str = Field("127.0.0.1", description="interface both servers bind; not loopback needs authentication")
    prefect_port: int = Field(4200, ge=1, le=65535)
    mlflow_port: int = Field(5000, ge=1, le=65535)
    deploy: bool = Field(True, description="run `prefect deploy --all` once the workers are up")
    prefect_db: Literal["sqlite", "postgresql"] = Field(
        "sqlite", description="the Prefect server's database: SQLite in its home, or a PostgreSQL cluster the "
        "stack runs (genlib.ops.postgres; for nightly runs and several workers)")
    timeout: float = Field(240.0, gt=0, description="seconds each server may take to answer")

    @property
    def client_host(self) -> str:
        """Where local clients reach the servers (a wildcard bind is reached on loopback)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def prefect_url(self) -> str:
        return f"http://{self.client_host}:{self.prefect_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.client_host}:{self.mlflow_port}"


class Auth(BaseModel):
    """Credentials from the environment: MLflow's admin (basic-auth app) and Prefect's ``user:password``."""

    model_config = ConfigDict(frozen=True)

    mlflow_username: str = "admin"
    mlflow_password: str | None = None
    prefect_auth_string: str | None = None

    @property
    def complete(self) -> bool:
        return bool(self.mlflow_password and self.prefect_auth_string)


def _read_secret(env: Mapping[str, str], name: str) -> str | None:
    """``$NAME``, else the contents of the file ``$NAME_FILE`` (stripped), else None."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).expanduser().read_text().strip() or None
        except OSError as err:
            raise ConfigError(f"{name}_FILE={path}: cannot read it ({err.strerror})") from None
    return None


def auth_from_env(env: Mapping[str, str] | None = None) -> Auth:
    env = os.environ if env is None else env
    password = _read_secret(env, "MLFLOW_AUTH_ADMIN_PASSWORD")
    if password is not None and len(password) < 12:
        raise ConfigError("MLFLOW_AUTH_ADMIN_PASSWORD: MLflow's basic-auth app needs at least 12 characters")
    auth_string = _read_secret(env, "PREFECT_SERVER_API_AUTH_STRING")
    if auth_string is not None and ":" not in auth_string:
        raise ConfigError("PREFECT_SERVER_API_AUTH_STRING: expected user:password")
    return Auth(mlflow_username=env.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin", mlflow_password=password,
                prefect_auth_string=auth_string)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def check_bind(host: str, auth: Auth) -> None:
    """Refuse to serve beyond loopback unless both servers require authentication."""
    if is_loopback(host) or auth.complete:
        return
    missing = [n for n, v in (("MLFLOW_AUTH_ADMIN_PASSWORD (or _FILE)", auth.mlflow_password),
                              ("PREFECT_SERVER_API_AUTH_STRING", auth.prefect_auth_string)) if not v]
    raise ConfigError(f"refusing to bind {host} without authentication: set {' and '.join(missing)} "
                      f"(see docs/deploy.md), or bind 127.0.0.1")


def client_env(settings: StackSettings, auth: Auth, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of every process that talks to the stack (workers, deploy, flow runs they start)."""
    env = dict(os.environ if base is None else base)
    env.update(PREFECT_API_URL=f"{settings.prefect_url}/api", MLFLOW_TRACKING_URI=settings.mlflow_url,
               GENLIB_PROJECT_DIR=str(settings.project), PREFECT_HOME=str(prefect_home(settings.project)),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true")
    if auth.prefect_auth_string:
        env["PREFECT_API_AUTH_STRING"] = auth.prefect_auth_string
    if auth.mlflow_password and not env.get("MLFLOW_TRACKING_PASSWORD"):
        env.update(MLFLOW_TRACKING_USERNAME=auth.mlflow_username, MLFLOW_TRACKING_PASSWORD=auth.mlflow_password)
    return env


# --- up, down, status -------------------------------------------------------------------------------


def load_state(project: Path) -> dict[str, Any] | None:
    path = state_dir(project) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _save_state(project: Path, state: Mapping[str, Any]) -> None:
    path = state_dir(project) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)  # never a half-written record of what to stop


def running(state: Mapping[str, Any] | None) -> bool:
    """Every recorded process alive and both servers answering."""
    if not state or not state.get("processes"):
        return False
    if not all(alive(r) for r in state["processes"]):
        return False
    return (http_status(f"{state['prefect_url']}/api/health") == 200 and http_status(f"{state['mlflow_url']}/health") == 200)


def up(settings: StackSettings, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Start the stack (or find it running); returns its state record. Raises GenlibError with one line."""
    project = settings.project
    previous = load_state(project)
    if running(previous):
        echo(f"genlib stack already running (started {previous['started']})")  # type: ignore[index]
        _print_urls(previous, echo)  # type: ignore[arg-type]
        return previous  # type: ignore[return-value]
    if previous:  # some part stopped: start clean rather than guess which parts are still good
        echo("part of the recorded stack has stopped; stopping the rest and starting again")
        down(project, echo=lambda _: None)
    auth = auth_from_env()
    check_bind(settings.host, auth)
    for what, port in (("Prefect", settings.prefect_port), ("MLflow", settings.mlflow_port)):
        if not port_free(settings.host, port):
            raise ConfigError(f"port {port} on {settings.host} is in use (wanted for {what}); stop what holds it "
                              f"or choose --{what.lower()}-port")
    folder = state_dir(project)
    folder.mkdir(parents=True, exist_ok=True)
    prefect_home(project).mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": settings.host,
                             "prefect_url": settings.prefect_url, "mlflow_url": settings.mlflow_url,
                             "auth": bool(auth.mlflow_password), "processes": []}
    env = client_env(settings, auth)
    try:
        # The UI calls the API at this address from the browser: loopback here, the host's name when shared.
        ui_host = socket.getfqdn() if settings.host in ("0.0.0.0", "::", "") else settings.host
        ui_api = os.environ.get("PREFECT_UI_API_URL") or f"http://{ui_host}:{settings.prefect_port}/api"
        # Log streaming: `prefect deployment run ... --watch` prints the flow run's log lines (a promotion's
        # message, a refusal's gate) only when the server publishes and streams them.
        server_env = {**env, "PREFECT_UI_API_URL": ui_api, "PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED": "true",
                      "PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED": "true"}
        if auth.prefect_auth_string:
            server_env["PREFECT_SERVER_API_AUTH_STRING"] = auth.prefect_auth_string
        if settings.prefect_db == "postgresql":
            server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = _start_postgres(project, state, settings.timeout)
        snapshot = seed_home(prefect_home(project), server_env) is False  # a new home: from the cached empty database
        _record(project, state, spawn("prefect-server", [executable("prefect"), "server", "start", "--host", settings.host,
                                                          "--port", str(settings.prefect_port)],
                                       server_env, folder, project))
        mlflow_env = {**env, "MLFLOW_HOST": settings.host, "MLFLOW_PORT": str(settings.mlflow_port),
                      "MLFLOW_WORKERS": os.environ.get("MLFLOW_WORKERS", "1"), "MLFLOW_BIN": executable("mlflow")}
        if auth.mlflow_password:
            mlflow_env.update(MLFLOW_AUTH_ADMIN_PASSWORD=auth.mlflow_password,
                              MLFLOW_AUTH_ADMIN_USERNAME=auth.mlflow_username)
        _record(project, state, spawn("mlflow-server", ["bash", str(project / "mlflow" / "serve.sh")],
                                       mlflow_env, folder, project))
        prefect, mlflow = state["processes"][-2:]
        _wait("the Prefect server", lambda: http_status(f"{settings.prefect_url}/api/health") == 200, settings.timeout, prefect)
        if snapshot:  # before the work pools below: the template holds no project's objects
            save_template(prefect_home(project))
        _wait("the MLflow server", lambda: http_status(f"{settings.mlflow_url}/health") == 200, settings.timeout, mlflow)
        # One worker at a time: two workers creating their pools at once on the SQLite database made one of
        # the inserts fail with "database is locked" (a deferred transaction cannot wait for the lock).
        for pool in POOLS:
            worker_env = dict(env)
            if pool == "gpu":
                worker_env.pop("GENLIB_DEVICE", None)  # "auto" in the flows: CUDA when present, else the CPU
            argv = [executable("prefect"), "worker", "start", "--pool", pool, "--type", "process",
                    "--name", f"genlib-{pool}-{socket.gethostname()}"] + (["--limit", "1"] if pool == "gpu" else [])
            record = spawn(f"worker-{pool}", argv, worker_env, folder, project)
            _record(project, state, record)
            _wait(f"the {pool} worker", lambda p=pool: http_status(f"{settings.prefect_url}/api/work_pools/{p}",
                                                            auth.prefect_auth_string) == 200, settings.timeout, record)
        if settings.deploy:
            _deploy(project, env, folder)
            state["deployed"] = True
            _save_state(project, state)
    except BaseException:
        down(project, echo=lambda _: None)
        raise
    echo("genlib stack started")
    _print_urls(state, echo)
    return state


def _start_postgres(project: Path, state: dict[str, Any], timeout: float) -> str:
    """Start the stack's PostgreSQL cluster (``<state>/postgres``, created the first time) on a free loopback
    port, with the ``prefect`` database; returns the Prefect server's database URL."""
    from genlib.ops import postgres

    cluster = state_dir(project).parent / "postgres"
    postgres.ensure_cluster(cluster)
    port = free_port(0)
    record = spawn("postgres", postgres.server_argv(cluster, port), os.environ, state_dir(project), project)
    _record(project, state, record)
    _wait("PostgreSQL", lambda: postgres.ready(port), timeout, record)
    postgres.ensure_database(port, "prefect")
    state["prefect_db"] = postgres.url(port, "prefect")
    return state["prefect_db"]


def _wait(what: str, check: Callable[[], bool], timeout: float, record: Mapping[str, Any]) -> None:
    """Until ``check`` passes; raises GenlibError (one line naming the log) when the process exits or
    ``timeout`` seconds pass."""
    if wait_until(check, timeout, lambda: alive(record), interval=0.5):
        return
    if not alive(record):
        raise GenlibError(f"{what} exited while starting; see {record['log']}")
    raise GenlibError(f"{what} did not answer within {timeout:.0f} s; see {record['log']}")


def _record(project: Path, state: dict[str, Any], record: dict[str, Any]) -> None:
    state["processes"].append(record)
    _save_state(project, state)  # recorded at once: a failure later still leaves it for `down`


def _deploy(project: Path, env: Mapping[str, str], folder: Path) -> None:
    log = folder / "deploy.log"
    with open(log, "wb") as out:
        done = subprocess.run([executable("prefect"), "--no-prompt", "deploy", "--all"], cwd=project, env=dict(env),
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=600)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise GenlibError(f"prefect deploy --all failed ({tail[0][:200]}); see {log}")


def _print_urls(state: Mapping[str, Any], echo: Callable[[str], None]) -> None:
    from genlib.tracking.links import dashboard_lines, find_experiments  # no mlflow import: REST over urllib

    credentials = None
    if state.get("auth"):
        with contextlib.suppress(ConfigError):
            auth = auth_from_env()
            credentials = (auth.mlflow_username, auth.mlflow_password) if auth.mlflow_password else None
    echo(f"  Prefect UI: {state['prefect_url']}")
    echo(f"  MLflow UI:  {state['mlflow_url']}")
    for line in dashboard_lines(state["mlflow_url"], find_experiments(state["mlflow_url"], credentials), indent="    "):
        echo(line)
    echo(f"  use them:   export PREFECT_API_URL={state['prefect_url']}/api MLFLOW_TRACKING_URI={state['mlflow_url']}"
         + ("  (plus PREFECT_API_AUTH_STRING, MLFLOW_TRACKING_USERNAME/PASSWORD)" if state.get("auth") else ""))
    echo('  or:         env_lines="$(uv run genlib stack env)" && eval "$env_lines"')
    echo("  stop with:  make down  (or genlib stack down)")


def down(project: Path, echo: Callable[[str], None] = print) -> list[str]:
    """Stop what ``up`` recorded (workers first, then the servers); returns the names stopped."""
    state = load_state(project)
    if not state:
        echo("genlib stack is not running (nothing recorded)")
        return []
    stopped = [r["name"] for r in reversed(state.get("processes", [])) if stop_group(r)]
    with contextlib.suppress(FileNotFoundError):
        (state_dir(project) / STATE_FILE).unlink()
    echo(f"genlib stack stopped ({', '.join(stopped) or 'nothing was still running'})")
    return stopped


def status(project: Path) -> dict[str, Any]:
    """What is recorded and whether each part runs: ``{"running": bool, "processes": {name: alive},
    "errors": {name: [line, ...]}}``, the error lines each process logged since ``up`` started it."""
    state = load_state(project) or {}
    records = state.get("processes", [])
    return {"running": running(state), "prefect_url": state.get("prefect_url"), "mlflow_url": state.get("mlflow_url"),
            "processes": {r["name"]: alive(r) for r in records},
            "errors": {r["name"]: error_lines(r) for r in records}}


def env_lines(project: Path) -> list[str]:
    """Shell lines pointing a shell at the running stack (``eval "$(genlib stack env)"``); credentials are
    not printed: with authentication on, the user exports their own."""
    state = load_state(project)
    if not running(state):
        raise ConfigError("genlib stack is not running here; start it with `make up`")
    lines = [f"export PREFECT_API_URL={state['prefect_url']}/api",  # type: ignore[index]
             f"export MLFLOW_TRACKING_URI={state['mlflow_url']}"]  # type: ignore[index]
    if state.get("auth"):  # type: ignore[union-attr]
        lines.append("# authentication is on: also export PREFECT_API_AUTH_STRING, MLFLOW_TRACKING_USERNAME and "
                     "MLFLOW_TRACKING_PASSWORD")
    return lines
