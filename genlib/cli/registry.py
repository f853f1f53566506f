"""``genlib registry list``, ``genlib promote`` and ``genlib report``: reading and moving what MLflow holds."""

from __future__ import annotations

import json
from typing import Optional

import typer

from genlib.cli.common import json_safe


def registry_list_command(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Registered genlib models: versions, aliases and key metrics."""
    from genlib.tracking import configure_tracking
    from genlib.tracking.registry import list_registry

    configure_tracking()
    models = list_registry()
    if as_json:
        typer.echo(json.dumps(json_safe(models), indent=2))
        return
    if not models:
        typer.echo("no genlib models registered yet; run `genlib pipeline`")
        return
    from genlib.cli.summary import registry_table

    typer.echo(registry_table(models))


def promote_command(
    name: str = typer.Argument(..., metavar="NAME", help="registered model, e.g. genlib-vae-digits"),
    version: str = typer.Option(..., "--version", metavar="N|ALIAS", help="version number, or an alias such as challenger"),
    alias: str = typer.Option("champion", "--alias", metavar="ALIAS", help="the alias to point at the version"),
    force: bool = typer.Option(False, "--force", help="move the alias even if a gate fails"),
) -> None:
    """Point ALIAS of NAME at a version after checking its metric gates; refuses naming the failed gate."""
    from genlib.tracking import configure_tracking
    from genlib.tracking.registry import promote

    configure_tracking()
    done = promote(name, version, alias, force=force)
    if not done.changed:  # forced or not: nothing moved
        typer.echo(f"{done.name}: version {done.version} is already @{done.alias}; nothing changed")
        return
    forced = " (forced past a failed gate)" if done.forced else ""
    typer.echo(f"{done.name}@{done.alias} -> version {done.version} (was {done.previous or 'unset'}){forced}")


def report_command(
    run: Optional[str] = typer.Option(None, "--run", metavar="RUN_ID",
                                      help="an evaluation run id (default: the latest report)"),
    as_json: bool = typer.Option(False, "--json", help="print the tables as JSON records"),
) -> None:
    """Print the latest evaluation's tables, read back from its MLflow run."""
    from genlib.tracking import configure_tracking
    from genlib.tracking import tags as T
    from genlib.tracking.errors import RegistryError
    from genlib.tracking.runs import latest_run, load_report_tables

    configure_tracking()
    if run is None:
        found = latest_run({T.KIND: "report"})
        if found is None:
            raise RegistryError("no evaluation report in the tracking store yet; run `genlib pipeline`")
        run = found.info.run_id
    title = f"# Evaluation report (MLflow run {run})"
    markdown = None if as_json else _stored_markdown(run)
    if markdown is not None:  # the report as rendered when it was logged: no evaluation code to import
        lines = markdown.splitlines()
        typer.echo("\n".join([title, *lines[1:]] if lines[:1] and lines[0].startswith("# ") else [title, "", *lines]))
        return
    try:
        tables = load_report_tables(run)
    except Exception as err:  # MlflowException for a missing run
        raise RegistryError(f"cannot read evaluation run {run}: {str(err).splitlines()[0]}") from None
    if not tables:
        raise RegistryError(f"run {run} has no evaluation tables")
    if as_json:
        payload = {name: json_safe(df.astype(object).where(df.notna(), None).to_dict(orient="records"))
                   for name, df in tables.items()}
        typer.echo(json.dumps({"run_id": run, "tables": payload}, indent=2, default=str))
        return
    from genlib.evaluation.report import EvaluationReport  # a run logged without report.md

    typer.echo(EvaluationReport(tables=tables).markdown(title=title.removeprefix("# ")))


def _stored_markdown(run_id: str) -> str | None:
    """The ``report.md`` that :func:`genlib.tracking.runs.log_report` stored in the run, or None."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        if not any(a.path == "report.md" for a in client.list_artifacts(run_id)):
            return None
        import mlflow.artifacts

        return mlflow.artifacts.load_text(f"runs:/{run_id}/report.md")
    except (MlflowException, OSError):
        return None  # a missing run is reported, with its id, by the table path
