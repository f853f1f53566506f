"""``genlib stack up | down | status | env``: the scheduled system on this machine (see genlib.ops.stack)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from genlib.cli.help import Command, Group

app = typer.Typer(cls=Group, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]}, help="Prefect and MLflow servers, cpu/gpu workers and the deployments, "
                                             "on this machine (make up / make down).")


def _project(project: Optional[Path]) -> Path:
    from genlib.ops.project import project_dir

    return project.expanduser().resolve() if project else project_dir()


@app.command("up", cls=Command)
def up_command(
    host: str = typer.Option("127.0.0.1", "--host", help="interface both servers bind (not loopback: needs "
                             "MLFLOW_AUTH_ADMIN_PASSWORD and PREFECT_SERVER_API_AUTH_STRING)"),
    prefect_port: int = typer.Option(4200, "--prefect-port", help="Prefect server (UI and API) port"),
    mlflow_port: int = typer.Option(5000, "--mlflow-port", help="MLflow tracking server port"),
    deploy: bool = typer.Option(True, "--deploy/--no-deploy", help="run `prefect deploy --all` (prefect.yaml)"),
    project: Optional[Path] = typer.Option(None, "--project", help="the genlib checkout (default: "
                                           "GENLIB_PROJECT_DIR, else this checkout)"),
    prefect_db: str = typer.Option("sqlite", "--prefect-db", metavar="sqlite|postgresql",
                                   help="the Prefect server's database: SQLite in .genlib/prefect, or a PostgreSQL "
                                        "cluster in .genlib/postgres that the stack runs (needs Debian's "
                                        "postgresql; no 'database is locked' errors with several workers)"),
) -> None:
    """Start the servers, one worker per pool and the deployments, or say that they already run."""
    from genlib.errors import ConfigError
    from genlib.ops.stack import StackSettings, up

    if prefect_db not in ("sqlite", "postgresql"):
        raise ConfigError(f"--prefect-db {prefect_db}: expected sqlite or postgresql")
    up(StackSettings(project=_project(project), host=host, prefect_port=prefect_port, mlflow_port=mlflow_port,
                     deploy=deploy, prefect_db=prefect_db), echo=typer.echo)  # type: ignore[arg-type]


@app.command("down", cls=Command)
def down_command(
    project: Optional[Path] = typer.Option(None, "--project", help="the genlib checkout (default: this one)"),
) -> None:
    """Stop the processes `genlib stack up` started (by the PIDs it recorded)."""
    from genlib.ops.stack import down

    down(_project(project), echo=typer.echo)


@app.command("status", cls=Command)
def status_command(
    project: Optional[Path] = typer.Option(None, "--project", help="the genlib checkout (default: this one)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Whether the stack runs, and each of its processes."""
    from genlib.ops.stack import load_state, status

    info = status(_project(project))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"genlib stack {'running' if info['running'] else 'not running'}")
    for name, ok in info["processes"].items():
        errors = info["errors"].get(name, [])
        typer.echo(f"  {name:<15} {'alive' if ok else 'stopped'}"
                   + (f", {len(errors)} error line{'s' * (len(errors) != 1)} in its log" if errors else ", no errors"))
        for line in errors[-3:]:
            typer.echo(f"      {line[:160]}")
    if info["running"]:
        typer.echo(f"  Prefect UI: {info['prefect_url']}\n  MLflow UI:  {info['mlflow_url']}")
    logged = {name: lines for name, lines in info["errors"].items() if lines}
    if logged:
        logs = ", ".join(r["log"] for r in (load_state(_project(project)) or {}).get("processes", []) if r["name"] in logged)
        typer.echo(f"  errors were logged; read them in {logs}")


@app.command("env", cls=Command)
def env_command(
    project: Optional[Path] = typer.Option(None, "--project", help="the genlib checkout (default: this one)"),
) -> None:
    """Print export lines for the running stack: eval "$(genlib stack env)"."""
    from genlib.ops.stack import env_lines

    for line in env_lines(_project(project)):
        typer.echo(line)
