"""Runs: naming, data set inputs, evaluation reports in and out, and finding runs again."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import mlflow

KIND_TAG = "genlib.kind"  # data | train | evaluation | suite
CONFIG_KEY_TAG = "genlib.config_key"
TABLES_DIR = "tables"
PLOTS_DIR = "plots"


def run_name(family: str, profile: str, config_key: str) -> str:
    """``<family>-<profile>-<first 8 of the config key>``: runs of one config share a name."""
    return f"{family}-{profile}-{config_key[:8]}"


def log_dataset_input(data: Any, context: str = "training", run_id: str | None = None) -> None:
    """Log a DataSplits as the run's data set input, with its genlib digest (shortened in MLflow's field,
    whole in the ``genlib.dataset_digest`` input tag)."""
    import numpy as np
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.types import Schema, TensorSpec

    schema = Schema([TensorSpec(np.dtype(np.float32), (-1, *data.image_shape), "x"),
                     TensorSpec(np.dtype(np.int64), (-1,), "y")])
    source = CodeDatasetSource(tags={"genlib.source": str(data.source)[:500],
                                     "genlib.sizes": json.dumps(data.sizes)})
    # MLflow stores at most 36 characters of digest; the full sha256 goes in a tag.
    dataset = MetaDataset(source=source, name=data.name, digest=data.digest[:16], schema=schema)
    tags = [InputTag("mlflow.data.context", context), InputTag("genlib.dataset_digest", data.digest)]
    run_id = run_id or mlflow.active_run().info.run_id
    mlflow.MlflowClient().log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags)])


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric, finite entries (MLflow stores NaN, but gates and tags want numbers)."""
    out = {}
    for k, v in metrics.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[k] = f
    return out


def log_report(report: Any, run_id: str, *, model_id: str | None = None) -> list[str]:
    """Log an EvaluationReport into ``run_id``: metrics (one call, linked to ``model_id`` when given),
    each table with ``log_table`` (``tables/<name>.json``, readable by ``mlflow.load_table``), each
    figure as ``plots/<name>.png`` and the markdown as ``report.md``. Returns the table names."""
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    numeric = {k: float(v) for k, v in report.metrics.items() if isinstance(v, (int, float))}
    if numeric:
        import time

        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0, model_id=model_id) for k, v in numeric.items()],
                         synchronous=True)
    for name, table in report.tables.items():
        client.log_table(run_id, table.reset_index(drop=True), f"{TABLES_DIR}/{name}.json")
    for name, fig in report.figures.items():
        client.log_figure(run_id, fig, f"{PLOTS_DIR}/{name}.png")
    client.log_text(run_id, report.markdown(), "report.md")
    return list(report.tables)


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
