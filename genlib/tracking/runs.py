"""Runs: one helper starts every kind of genlib run with its standard tags (nested under the pipeline's
parent run when there is one); data set inputs, evaluation reports in and out, and finding runs again."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import mlflow

from genlib.tracking import tags as T

logger = logging.getLogger(__name__)

TABLES_DIR = "tables"
METRICS_FILE = "metrics.json"
PLOTS_DIR = "plots"

# The pipeline's parent run while one is open in this context (Prefect copies contextvars into task threads).
_PARENT: ContextVar[str | None] = ContextVar("genlib_parent_run_id", default=None)
_UNSET: Any = object()


def run_name(family: str, profile: str, config_key: str) -> str:
    """``<family>-<profile>-<first 8 of the config key>``: runs of one config share a name."""
    return f"{family}-{profile}-{config_key[:8]}"


def standard_tags(kind: T.Kind, *, dataset: str | None = None, digest: str | None = None,
                  config_key: str | None = None, device: str | None = None,
                  prefect_flow_run_id: str | None = None) -> dict[str, str]:
    """The tags every run of ``kind`` carries: kind, data set and digest, config key, device, Prefect flow
    run id (those given), and the host and PID of the process (so an interrupted run can be recognised)."""
    if kind not in T.KINDS:
        raise ValueError(f"unknown run kind {kind!r}; one of {', '.join(T.KINDS)}")
    tags = {T.KIND: kind, T.HOST: socket.gethostname(), T.PID: str(os.getpid())}
    optional = {T.DATASET: dataset, T.DATASET_DIGEST: digest, T.CONFIG_KEY: config_key, T.DEVICE: device,
                T.PREFECT_FLOW_RUN_ID: prefect_flow_run_id}
    tags.update({k: str(v) for k, v in optional.items() if v})
    if kind == "evaluation":
        # MLflow's UI expands the parent of a run of this type: the runs and chart views then open on the
        # pipeline's family runs, so the charts compare the families without a click.
        tags[T.MLFLOW_RUN_TYPE] = T.MLFLOW_EVALUATION
    return tags


def current_parent() -> str | None:
    """The run id new runs nest under here (the open pipeline run, or one set by :func:`nested_under`)."""
    return _PARENT.get()


@contextlib.contextmanager
def nested_under(parent_run_id: str | None) -> Iterator[None]:
    """Runs started inside nest under ``parent_run_id`` (a worker's train flow, given the pipeline's run id)."""
    token = _PARENT.set(parent_run_id or None)
    try:
        yield
    finally:
        _PARENT.reset(token)


@contextlib.contextmanager
def tracked_run(kind: T.Kind, *, experiment_id: str, name: str, dataset: str | None = None,
                digest: str | None = None, config_key: str | None = None, device: str | None = None,
                prefect_flow_run_id: str | None = None, tags: Mapping[str, str] | None = None,
                run_id: str | None = None, parent_run_id: str | None = _UNSET) -> Iterator[str]:
    """Start a run of ``kind`` (or reopen ``run_id``, to resume into it) and yield its id.

    The run gets :func:`standard_tags` plus ``tags`` and nests under ``parent_run_id`` (default: the
    current parent). It ends FINISHED, FAILED on an exception, KILLED on KeyboardInterrupt/SystemExit.

    A ``pipeline`` (or ``sweep``) run is the parent: it is not made the thread's active run (tasks in other threads
    could not see it, and runs started in this thread would have to be ``nested=True``); runs of the
    other kinds started inside the ``with`` block, in any thread of this context, nest under it. Log into
    it with ``MlflowClient`` and its id. The other kinds are the thread's active run, so ``mlflow.log_*``
    and ``log_model`` go to them.
    """
    parent = current_parent() if parent_run_id is _UNSET else parent_run_id
    all_tags = {**standard_tags(kind, dataset=dataset, digest=digest, config_key=config_key, device=device,
                                prefect_flow_run_id=prefect_flow_run_id), **dict(tags or {})}
    if parent and run_id is None:
        all_tags[T.MLFLOW_PARENT_RUN_ID] = parent
    if kind in T.PARENT_KINDS:
        client = mlflow.MlflowClient()
        if run_id is None:
            run_id = client.create_run(experiment_id, tags=all_tags, run_name=name).info.run_id
        else:
            client.update_run(run_id, status="RUNNING")
        token = _PARENT.set(run_id)
        try:
            yield run_id
        except BaseException as err:
            _end(lambda status: client.set_terminated(run_id, status), _failure_status(err))
            raise
        finally:
            _PARENT.reset(token)
        client.set_terminated(run_id, "FINISHED")
        return
    run = mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=name, tags=all_tags)
    try:
        yield run.info.run_id
    except BaseException as err:
        _end(lambda status: mlflow.end_run(status), _failure_status(err))
        raise
    mlflow.end_run("FINISHED")


def _failure_status(err: BaseException) -> str:
    # An error may say how its run ends (a pruned sweep trial: KILLED, stopped on purpose, not failed).
    declared = getattr(err, "run_status", None)
    if declared in ("KILLED", "FAILED"):
        return declared
    return "KILLED" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "FAILED"


def _end(end: Any, status: str) -> None:
    # Ending a run after a failure must not raise a second error over the first (the server may be gone).
    try:
        end(status)
    except Exception as err:  # noqa: BLE001 - the original error is what the caller needs to see
        logger.warning("could not mark the run %s: %s", status, str(err).splitlines()[0] if str(err) else err)
        with contextlib.suppress(Exception):
            if mlflow.active_run() is not None:
                mlflow.tracking.fluent._active_run_stack.get().pop()


def log_dataset_input(data: Any, context: str = "training", run_id: str | None = None) -> None:
    """Log a DataSplits as the run's data set input, with its genlib digest (shortened in MLflow's field,
    whole in the data set digest input tag)."""
    import numpy as np
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.types import Schema, TensorSpec

    schema = Schema([TensorSpec(np.dtype(np.float32), (-1, *data.image_shape), "x"),
                     TensorSpec(np.dtype(np.int64), (-1,), "y")])
    source = CodeDatasetSource(tags={T.SOURCE: str(data.source)[:500], T.SIZES: json.dumps(data.sizes)})
    # MLflow stores at most 36 characters of digest; the full sha256 goes in a tag.
    dataset = MetaDataset(source=source, name=data.name, digest=data.digest[:16], schema=schema)
    tags = [InputTag(T.DATA_CONTEXT, context), InputTag(T.DATASET_DIGEST, data.digest)]
    run_id = run_id or mlflow.active_run().info.run_id
    mlflow.MlflowClient().log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags)])


def log_model_input(run_id: str, model_id: str) -> None:
    """Record the logged model ``model_id`` as an input of ``run_id`` (an evaluation links to what it measured)."""
    from mlflow.entities import LoggedModelInput

    mlflow.MlflowClient().log_inputs(run_id, models=[LoggedModelInput(model_id)])


def chart_metrics(metrics: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(logged as MLflow metrics, kept in ``metrics.json`` only): the numeric metrics split on their names.

    MLflow's chart view opens one section per metric-name prefix before a '/' (``finetune/scratch/100``),
    empty for every run but the one that logged it; so only names without '/' (``fid``, ``test_loss``, those
    that compare the families) become metrics, and the suite's grid of numbers stays in its tables and
    ``metrics.json``."""
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return ({k: v for k, v in numeric.items() if "/" not in k}, {k: v for k, v in numeric.items() if "/" in k})


def log_report(report: Any, run_id: str, *, model_id: str | None = None, data: Any = None) -> list[str]:
    """Log an EvaluationReport into ``run_id``: the metrics :func:`chart_metrics` keeps (one call, linked to
    ``model_id`` and the DataSplits ``data`` when given) and, when it held some back, all of them in
    ``metrics.json``; each table with ``log_table`` (``tables/<name>.json``, readable by ``mlflow.load_table``),
    each figure as ``plots/<name>.png`` and the markdown as ``report.md``. Returns the table names."""
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    numeric, held_back = chart_metrics(report.metrics)
    if held_back:  # every number together, non-finite ones as null
        client.log_dict(run_id, {k: v if math.isfinite(v) else None for k, v in {**numeric, **held_back}.items()},
                        METRICS_FILE)
    if numeric:
        import time

        now = int(time.time() * 1000)
        # Same short digest as the run's data set input, so the model page names the data set of each metric.
        on = {"dataset_name": data.name, "dataset_digest": data.digest[:16]} if data is not None else {}
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0, model_id=model_id, **on) for k, v in numeric.items()],
                         synchronous=True)
    for name, table in report.tables.items():
        client.log_table(run_id, table.reset_index(drop=True), f"{TABLES_DIR}/{name}.json")
    for name, fig in report.figures.items():
        client.log_figure(run_id, fig, f"{PLOTS_DIR}/{name}.png")
    client.log_text(run_id, report.markdown(), "report.md")
    return list(report.tables)


def link_evaluation(train_run_id: str, model_id: str | None, experiment_id: str, eval_run_id: str,
                    summary: str) -> None:
    """End the training run's description, and its logged model's, with a link to the evaluation run that
    measured the model (``summary``: its headline numbers), replacing any earlier such ending."""
    from genlib.tracking.version_page import run_link

    client = mlflow.MlflowClient()
    ending = f"Test metrics{f' ({summary})' if summary else ''}: [evaluation run {eval_run_id[:8]}]" \
             f"({run_link(experiment_id, eval_run_id)})."
    note = client.get_run(train_run_id).data.tags.get(T.MLFLOW_RUN_NOTE, "")
    client.set_tag(train_run_id, T.MLFLOW_RUN_NOTE, _with_ending(note, ending))
    if model_id:
        note = client.get_logged_model(model_id).tags.get(T.MLFLOW_RUN_NOTE, "")
        client.set_logged_model_tags(model_id, {T.MLFLOW_RUN_NOTE: _with_ending(note, ending)})


def _with_ending(note: str, ending: str) -> str:
    body = note.split("\n\nTest metrics", 1)[0].rstrip()
    return f"{body}\n\n{ending}" if body else ending


def load_report_tables(run_id: str) -> dict[str, Any]:
    """Tables logged by :func:`log_report` in ``run_id``, as DataFrames by name."""
    client = mlflow.MlflowClient()
    experiment_id = client.get_run(run_id).info.experiment_id
    names = [a.path.rsplit("/", 1)[-1].removesuffix(".json") for a in client.list_artifacts(run_id, TABLES_DIR)
             if a.path.endswith(".json")]
    return {name: client.load_table(experiment_id, f"{TABLES_DIR}/{name}.json", run_ids=[run_id]) for name in names}


def run_is_usable(run_id: str, needs_model: bool = True) -> bool:
    """True when ``run_id`` exists in the current store, FINISHED, not deleted, and (if asked) logged a model."""
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return False
    if run.info.status != "FINISHED" or run.info.lifecycle_stage != "active":
        return False
    if needs_model:
        return bool(run.outputs and run.outputs.model_outputs)
    return True


def latest_run(tags: Mapping[str, str], experiment_ids: list[str] | None = None) -> Any | None:
    """Newest FINISHED run whose tags equal ``tags``, in ``experiment_ids`` (default: every genlib experiment)."""
    client = mlflow.MlflowClient()
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments(filter_string="name LIKE 'genlib-%'")]
    if not experiment_ids:
        return None
    clauses = ["attributes.status = 'FINISHED'"]
    clauses += [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
    runs = client.search_runs(experiment_ids, " and ".join(clauses), order_by=["attributes.start_time DESC"],
                              max_results=1)
    return runs[0] if runs else None
