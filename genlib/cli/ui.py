"""``genlib ui``: the MLflow UI and the Prefect UI on 127.0.0.1, stopped together on Ctrl-C or SIGTERM.

The Prefect server uses the project's Prefect home, so it shows the runs of earlier ``genlib pipeline``
and ``make run`` calls; while it runs, pipelines report to it instead of starting a temporary server.
A server that already serves the project (``PREFECT_API_URL``, or the stack's) is shown, not started.
Under the MLflow URL it prints each genlib experiment's runs view and the registered models page
(genlib.tracking.links). The MLflow server's log is ``<project>/.genlib/ui/mlflow-server.log``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import typer

from genlib.errors import ConfigError
from genlib.ops.processes import executable, free_port, launch, stop_group, terminate_as_interrupt, wait_http


def ui_command(
    mlflow_port: int = typer.Option(5000, "--mlflow-port", metavar="PORT",
                                    help="port of the MLflow UI (another if taken)"),
    prefect_port: int = typer.Option(4200, "--prefect-port", metavar="PORT",
                                     help="port of the Prefect UI and API (another if taken)"),
    once: bool = typer.Option(False, "--once", help="start both, wait until they answer, print the URLs, stop"),
) -> None:
    """Start the MLflow UI and a Prefect server on 127.0.0.1 and print both URLs (Ctrl-C stops them)."""
    from genlib.ops import prefect_server as ps
    from genlib.tracking import resolve_tracking
    from genlib.tracking.links import dashboard_lines, find_experiments

    home = ps.use_project_home()
    target = resolve_tracking()
    watched: list[subprocess.Popen] = []  # the servers started here: the command ends when one of them does
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(terminate_as_interrupt())
        if target.local:
            port = free_port(mlflow_port)
            target.artifact_root.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}  # no GenAI job runners
            mlflow = launch([executable("mlflow"), "server", "--backend-store-uri", target.uri, "--default-artifact-root",
                             target.artifact_root.as_uri(), "--host", "127.0.0.1", "--port", str(port),  # type: ignore[union-attr]
                             "--workers", "1"], env, _log_path(), tied=True)
            stack.callback(stop_group, mlflow)  # it leads its own process group: its workers stop with it
            watched.append(mlflow)
            urls["MLflow"] = f"http://127.0.0.1:{port}"
        else:
            urls["MLflow"] = target.uri
        api = os.environ.get("PREFECT_API_URL") or ps.running_server(home)
        server = None
        if api:
            urls["Prefect"] = api.rstrip("/").removesuffix("/api")
        else:
            server = stack.enter_context(ps.LocalServer(home, prefect_port, ui=True))
            assert server.proc is not None
            watched.append(server.proc)
            urls["Prefect"] = server.url
        health = {"MLflow": "/health", "Prefect": "/api/health"}
        for name, url in urls.items():
            if not wait_http(url + health[name], timeout=180):
                raise ConfigError(f"{name} did not answer at {url} within 180 s")
        if server is not None:  # pipelines started meanwhile report here (and so appear at once)
            ps.write_record(home, server.api_url, server.proc.pid)  # type: ignore[union-attr]
            stack.callback(ps.clear_record, home, server.proc.pid)  # type: ignore[union-attr]
        for name, url in urls.items():
            typer.echo(f"{name} UI: {url}")
            if name == "MLflow" and url.startswith(("http://", "https://")):
                for line in dashboard_lines(url, find_experiments(url)):
                    typer.echo(line)
        if once:
            return
        typer.echo("Ctrl-C stops both." if watched else "Both were already running; nothing to stop.")
        try:
            while watched and all(p.poll() is None for p in watched):
                time.sleep(1)
        except KeyboardInterrupt:
            pass


def _log_path() -> Path:
    """Beside the stack's state (git-ignored ``.genlib/``), not in the store's folder, which may be the checkout's."""
    from genlib.ops.project import project_dir, state_dir

    folder = state_dir(project_dir()).with_name("ui")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "mlflow-server.log"
