"""Operations commands: ``pipeline``, ``registry list``, ``promote``, ``ui`` and ``report``.

They import prefect, mlflow and the flows inside the commands, so the rest of the CLI (and genlib's
core) runs without them. Errors a user can fix are GenlibErrors: one line on stderr, exit code 2.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Optional

import typer

from genlib.cli import app
from genlib.errors import ConfigError, GenlibError

registry_app = typer.Typer(no_args_is_help=True, help="The MLflow model registry (genlib-* models).")
app.add_typer(registry_app, name="registry")


def _prefect_defaults() -> None:
    """Environment defaults for an in-process Prefect run, set before prefect reads its settings."""
    # A fresh ephemeral server migrates its database first; on a busy 2-core machine that exceeds the 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # No telemetry calls from the temporary server (this machine may be offline).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


class _PrefectServerStart(threading.Thread):
    """Starts Prefect's temporary server in the background; ``error`` holds what went wrong, if anything."""

    def __init__(self) -> None:
        super().__init__(name="prefect-server-start", daemon=True)
        self.error: BaseException | None = None

    def run(self) -> None:
        from prefect.server.api.server import SubprocessASGIServer

        try:
            SubprocessASGIServer().start()  # the instance the flows' client will find and reuse
        except BaseException as err:  # reported by the caller after join()
            self.error = err


def _start_prefect_in_background() -> _PrefectServerStart | None:
    """Start Prefect's temporary server while the caller imports and loads data; join before running flows.

    Only when no PREFECT_API_URL is configured (the flows would otherwise start it, serially, later).
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    starter = _PrefectServerStart()
    starter.start()
    return starter


def _quiet_logging() -> None:
    """Prefect's run names in the console lines, and none of MLflow's per-model INFO chatter."""
    import logging

    from prefect.logging.formatters import PrefectFormatter

    fmt = PrefectFormatter(
        format="%(asctime)s | %(levelname)-7s | %(name)s - %(message)s",
        flow_run_fmt="%(asctime)s | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s",
        task_run_fmt="%(asctime)s | %(levelname)-7s | Task run %(task_run_name)r - %(message)s",
        datefmt="%H:%M:%S",
    )
    for handler in logging.getLogger().handlers:  # the CLI's handler: Prefect leaves the root logger to it
        handler.setFormatter(fmt)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # MLflow warns once per logged model that pip is not installed in a uv environment.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)


def _pydantic(cls: type, **values: Any) -> Any:
    from pydantic import ValidationError

    from genlib.models.registry import format_validation_error

    try:
        return cls(**values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err).replace("invalid value: ", "invalid option: ")
                          .replace("Value error, ", "")) from None


@app.command("pipeline")
def pipeline_command(
    dataset: str = typer.Option("digits", "--dataset", help="data set name or path"),
    models: Optional[str] = typer.Option(None, "--models", help="comma-separated families (default: all)"),
    profile: str = typer.Option("quick", "--profile", help="quick or full"),
    eval_profile: Optional[str] = typer.Option(None, "--eval-profile", help="default: --profile"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
    dispatch: str = typer.Option("auto", "--dispatch", help="auto, local or deployment (train on GPU workers)"),
    suite: bool = typer.Option(True, "--suite/--no-suite", help="run the suite-level evaluation"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="train every family this many epochs instead of the "
                                         "profile's (e.g. a CPU trial run of --profile full)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON instead of a table"),
) -> None:
    """Prepare data, then train, evaluate and register each family, then the suite; print a summary."""
    t_start = time.perf_counter()
    _prefect_defaults()
    from genlib.models import list_models

    family_list = [m.strip() for m in models.split(",") if m.strip()] if models else list_models()
    # Validate everything before starting anything (flows validate again: a deployment run has no CLI).
    from flows.params import DataParams, PipelineParams

    params = _pydantic(PipelineParams, data=DataParams(dataset=dataset), models=family_list, profile=profile,
                       eval_profile=eval_profile, device=device, dispatch=dispatch, suite=suite,
                       train_overrides={} if epochs is None else {"epochs": epochs})
    from genlib.training import resolve_device

    if resolve_device(device).type == "cpu" and params.profile == "full" and params.dispatch != "deployment":
        typer.echo("note: profile full is paper scale, meant for a GPU worker; on a small CPU machine it takes many "
                   "hours (per-epoch times in docs/benchmarks.md). The summary prints how long each part took.",
                   err=True)  # "cuda" on a machine without one is a one-line error now, not after the data prep
    if params.dispatch == "deployment":
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            raise ConfigError("--dispatch deployment needs a Prefect server with the train deployment: "
                              "set PREFECT_API_URL (see docs/deploy.md)")
    from genlib.tracking import configure_tracking, store_identity

    target = configure_tracking()  # unreachable server: one line naming the URI, nothing started
    server = _start_prefect_in_background()
    _quiet_logging()
    from flows.common import load_data
    from flows.pipeline import PipelineFailedError, pipeline

    store_identity()  # opens (and on first use creates) the tracking store while the server starts
    load_data(params.data)  # and fills the per-process data memo
    if server is not None:
        server.join()
        if server.error is not None:
            raise GenlibError(f"could not start Prefect's temporary server: {server.error}")
    t_ready = time.perf_counter()
    failure: str | None = None
    try:
        result = pipeline(params)
    except PipelineFailedError as err:
        if err.result is None:
            raise
        result, failure = err.result, str(err)
    total = time.perf_counter() - t_start
    if as_json:
        typer.echo(json.dumps({**_json_safe(result.model_dump(mode="json")), "wall_seconds": total}, indent=2))
    else:
        _print_summary(result, total, t_ready - t_start, target)
    if failure:
        raise GenlibError(failure)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Plain fixed-width text table."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _key_metrics(family: str, metrics: dict[str, float]) -> dict[str, Any]:
    from genlib.models import get_model_class

    cls = get_model_class(family)
    return {"primary": f"{cls.primary_metric}={_fmt(metrics.get(cls.primary_metric))}",
            "sq_err/img": metrics.get("test_sq_err_per_image"), "fid": metrics.get("fid"),
            "class_acc": metrics.get("class_accuracy")}


def _print_summary(result: Any, total: float, startup: float, target: Any) -> None:
    rows = []
    for s in result.families:
        metrics = {**(s.train.metrics if s.train else {}), **(s.evaluation.metrics if s.evaluation else {})}
        reg = s.registration
        row = {"family": s.family, **_key_metrics(s.family, metrics),
               "version": reg.version if reg else None, "aliases": ",".join(reg.aliases) if reg else None,
               "gates": (f"failed: {reg.failed_gate}" if reg.failed_gate else "passed") if reg else None,
               "trained": ("cached" if s.train.cached else f"{s.train.train_seconds:.1f}s") if s.train else None}
        if s.error:
            row["gates"] = f"error: {s.error}"[:70]
        rows.append(row)
    columns = ["family", "version", "aliases", "primary", "sq_err/img", "fid", "class_acc", "gates", "trained"]
    typer.echo("")
    typer.echo(f"data set {result.dataset.name} (digest {result.dataset.digest[:12]}, "
               f"train/val/test {'/'.join(str(n) for n in result.dataset.sizes.values())})")
    typer.echo(format_table(rows, columns))
    if result.report_run_id:
        typer.echo(f"evaluation report: MLflow run {result.report_run_id} (print it with `genlib report`)")
    sec = result.seconds
    compute = sec.get("train", 0.0) + sec.get("evaluate", 0.0) + sec.get("suite", 0.0)
    tracking = sec.get("tracking", 0.0)
    orchestration = sec.get("total", 0.0) - compute - tracking
    typer.echo(f"time {total:.1f}s = compute {compute:.1f}s (train {sec.get('train', 0):.1f}, evaluate "
               f"{sec.get('evaluate', 0):.1f}, suite {sec.get('suite', 0):.1f}) + MLflow logging {tracking:.1f}s + "
               f"Prefect runs, data checks, model loading {orchestration:.1f}s + start-up {startup:.1f}s "
               f"(imports, tracking store, data, Prefect server) + {total - startup - sec.get('total', 0):.1f}s other")
    typer.echo("dashboards:")
    typer.echo("  genlib ui                      # MLflow UI and Prefect UI on 127.0.0.1, URLs printed")
    if target.local:
        typer.echo(f"  mlflow ui --backend-store-uri {target.uri} --host 127.0.0.1 --port 5000")
    else:
        typer.echo(f"  MLflow: {target.uri}")
    typer.echo("  prefect server start --host 127.0.0.1   # then http://127.0.0.1:4200")


@registry_app.command("list")
def registry_list_command(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Registered genlib models: versions, aliases and key metrics."""
    from genlib.tracking import configure_tracking
    from genlib.tracking.registry import list_registry

    configure_tracking()
    models = list_registry()
    if as_json:
        typer.echo(json.dumps(_json_safe(models), indent=2))
        return
    if not models:
        typer.echo("no genlib models registered yet; run `genlib pipeline`")
        return
    rows = []
    for m in models:
        for v in m["versions"]:
            family = m["model"] or ""
            keys = _key_metrics(family, v["metrics"]) if family else {}
            rows.append({"name": m["name"], "version": v["version"], "aliases": ",".join(v["aliases"]),
                         **keys, "gates": v["gates"], "digest": (v["dataset_digest"] or "")[:12]})
    typer.echo(format_table(rows, ["name", "version", "aliases", "primary", "sq_err/img", "fid", "class_acc",
                                   "gates", "digest"]))


@app.command("promote")
def promote_command(
    name: str = typer.Argument(..., help="registered model, e.g. genlib-vae-digits"),
    version: str = typer.Option(..., "--version", help="version number, or an alias such as challenger"),
    alias: str = typer.Option("champion", "--alias"),
    force: bool = typer.Option(False, "--force", help="move the alias even if a gate fails"),
) -> None:
    """Point ALIAS of NAME at a version after checking its metric gates; refuses naming the failed gate."""
    from genlib.tracking import configure_tracking
    from genlib.tracking.registry import promote

    configure_tracking()
    done = promote(name, version, alias, force=force)
    forced = " (forced past a failed gate)" if done.forced else ""
    typer.echo(f"{done.name}@{done.alias} -> version {done.version} (was {done.previous or 'unset'}){forced}")


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback only
                if r.status < 500:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def _free_port(preferred: int) -> int:
    import socket

    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise ConfigError("no free port on 127.0.0.1")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@app.command("ui")
def ui_command(
    mlflow_port: int = typer.Option(5000, "--mlflow-port"),
    prefect_port: int = typer.Option(4200, "--prefect-port"),
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
            port = _free_port(mlflow_port)
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
            port = _free_port(prefect_port)
            env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false")}
            procs.append(subprocess.Popen([exe["prefect"], "server", "start", "--host", "127.0.0.1", "--port",
                                           str(port)], env=env, stdout=subprocess.DEVNULL, start_new_session=True))
            urls["Prefect"] = f"http://127.0.0.1:{port}"
        health = {"MLflow": "/health", "Prefect": "/api/health"}
        for name, url in urls.items():
            if not _wait_http(url + health[name], timeout=120):
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
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)


@app.command("report")
def report_command(
    run: Optional[str] = typer.Option(None, "--run", help="an evaluation run id (default: the latest report)"),
    as_json: bool = typer.Option(False, "--json", help="print the tables as JSON records"),
) -> None:
    """Print the latest evaluation's tables, read back from its MLflow run."""
    from genlib.evaluation import EvaluationReport
    from genlib.tracking import configure_tracking
    from genlib.tracking.errors import RegistryError
    from genlib.tracking.runs import KIND_TAG, load_report_tables, latest_run

    configure_tracking()
    if run is None:
        found = latest_run({KIND_TAG: "report"})
        if found is None:
            raise RegistryError("no evaluation report in the tracking store yet; run `genlib pipeline`")
        run = found.info.run_id
    try:
        tables = load_report_tables(run)
    except Exception as err:  # MlflowException for a missing run
        raise RegistryError(f"cannot read evaluation run {run}: {str(err).splitlines()[0]}") from None
    if not tables:
        raise RegistryError(f"run {run} has no evaluation tables")
    if as_json:
        payload = {name: _json_safe(df.astype(object).where(df.notna(), None).to_dict(orient="records"))
                   for name, df in tables.items()}
        typer.echo(json.dumps({"run_id": run, "tables": payload}, indent=2, default=str))
        return
    typer.echo(EvaluationReport(tables=tables).markdown(title=f"Evaluation report (MLflow run {run})"))
