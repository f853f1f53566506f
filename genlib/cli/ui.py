"""``genlib ui``: the MLflow UI and a Prefect server on 127.0.0.1, stopped together on Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import typer

from genlib.errors import ConfigError
from genlib.ops.processes import free_port, stop_group, wait_http


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def ui_command(
    mlflow_port: int = typer.Option(5000, "--mlflow-port", metavar="PORT", help="port of the MLflow UI (another if taken)"),
    prefect_port: int = typer.Option(4200, "--prefect-port", metavar="PORT", help="port of the Prefect UI and API (another if taken)"),
    once: bool = typer.Option(False, "--once", help="start both, wait until they answer, print the URLs, stop"),
) -> None:
    """Start the MLflow UI and a Prefect server on 127.0.0.1 and print both URLs (Ctrl-C stops them)."""
    from genlib.tracking import resolve_tracking

    target = resolve_tracking()
    procs: list[subprocess.Popen] = []
    bin_dir = os.path.dirname(sys.executable)
    exe = {n: shutil.which(n, path=bin_dir) or shutil.which(n) or n for n in ("mlflow", "prefect")}
    urls: dict[str, str] = {}
    try:
        if target.local:
            port = free_port(mlflow_port)
            target.artifact_root.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}  # no GenAI job runners
            procs.append(subprocess.Popen([exe["mlflow"], "server", "--backend-store-uri", target.uri,
                                           "--default-artifact-root", target.artifact_root.as_uri(),  # type: ignore[union-attr]
                                           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                          env=env, start_new_session=True))
            urls["MLflow"] = f"http://127.0.0.1:{port}"
        else:
            urls["MLflow"] = target.uri
        api = os.environ.get("PREFECT_API_URL")
        if api:
            urls["Prefect"] = api.removesuffix("/").removesuffix("/api")
        else:
            port = free_port(prefect_port)
            env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false")}
            procs.append(subprocess.Popen([exe["prefect"], "server", "start", "--host", "127.0.0.1", "--port",
                                           str(port)], env=env, stdout=subprocess.DEVNULL, start_new_session=True))
            urls["Prefect"] = f"http://127.0.0.1:{port}"
        health = {"MLflow": "/health", "Prefect": "/api/health"}
        for name, url in urls.items():
            if not wait_http(url + health[name], timeout=120):
                raise ConfigError(f"{name} did not answer at {url} within 120 s")
            typer.echo(f"{name} UI: {url}")
        if once:
            return
        typer.echo("Ctrl-C stops both.")
        signal.signal(signal.SIGTERM, _interrupt)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:  # each server leads its own process group: stop its workers too
            stop_group(p)
