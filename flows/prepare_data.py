"""``prepare_data``: load, validate and split a data set (genlib caches the splits on disk), and record it
in MLflow as a data set input with its digest. Returns a DatasetRef, never the tensors."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import ConfigAndStore, load_data, run_or_reuse, setup_tracking, track
from flows.params import DataParams, DatasetRef, RunRef
from flows.results import RESULTS
from genlib.evaluation.profiles import EvalProfile


@task(cache_policy=NO_CACHE)
def check_tracking_store() -> str:
    """Fail fast, naming the URI, when the tracking store is unreachable; nothing is logged before this."""
    return setup_tracking(check=True)


@task(cache_policy=NO_CACHE)
def load_and_validate(params: DataParams, evaluation: EvalProfile | None = None, device: str = "auto") -> dict[str, Any]:
    """Load (or read genlib's cache of) the splits in this process and check them; returns a summary. With an
    ``evaluation`` profile its baselines include the data's reference row (``reference_*``, the yardstick of
    the sample-quality gates, in the feature space the evaluations use, disk-cached there)."""
    from genlib.errors import DataError
    from genlib.tracking.gates import data_baselines

    data = load_data(params)
    for which, n in data.sizes.items():
        if n == 0:
            raise DataError(f"{data.name}: the {which} split is empty")
    lo, hi = float(data.x_train.min()), float(data.x_train.max())
    if not (0.0 <= lo and hi <= 1.0):
        raise DataError(f"{data.name}: pixel values must lie in [0, 1], found [{lo:.3g}, {hi:.3g}]")
    # Data without labels (one class) is fine: the pipeline skips what needs labels and says why.
    get_run_logger().info("%r%s", data, "" if data.labelled else " (no class labels)")
    baselines = data_baselines(data)
    if evaluation is not None:
        baselines.update(reference_metrics(params, data.digest, evaluation, device))
    return {"name": data.name, "digest": data.digest, "sizes": data.sizes, "image_shape": data.image_shape,
            "num_classes": data.num_classes, "baselines": baselines}


def reference_metrics(params: DataParams, digest: str, evaluation: EvalProfile,
                      device: str = "auto") -> dict[str, float]:
    """The data's ``reference_*`` metrics under ``evaluation`` (genlib.evaluation.features.data_reference: the
    feature space and the row are disk-cached by digest, so every process that asks reads the same numbers and
    only the first computes them)."""
    from flows.common import resolve_device
    from genlib.evaluation.features import data_reference

    data = load_data(params, expected_digest=digest)
    return data_reference(data, evaluation, device=resolve_device(device))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def record_reference(dataset: DatasetRef, evaluation: EvalProfile, device: str = "auto") -> DatasetRef:
    """``dataset`` with its reference row in ``baselines``, logged on its data run (where the row was not
    computed in data preparation: a pipeline on a pool leaves it to the first job that needs it)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    if any(k.startswith("reference_") for k in dataset.baselines):
        return dataset
    reference = reference_metrics(dataset.params, dataset.digest, evaluation, device)
    now = int(time.time() * 1000)
    MlflowClient().log_batch(dataset.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in reference.items()],
                             synchronous=True)
    return dataset.model_copy(update={"baselines": {**dataset.baselines, **reference}})


@task(cache_policy=ConfigAndStore(), retries=2, retry_delay_seconds=2, persist_result=True, result_serializer=RESULTS)
def log_dataset(params: DataParams, digest: str, baselines: dict[str, float]) -> RunRef:
    """One ``data`` run per (data set, split, digest) in the data set's experiment."""
    import mlflow

    from genlib.tracking import ensure_experiment, resolve_tracking
    from genlib.tracking.runs import log_dataset_input

    data = load_data(params, expected_digest=digest)
    experiment_id = ensure_experiment(data.name, resolve_tracking())
    # Shared by every pipeline on this data: not nested under one of them.
    with track("data", experiment_id=experiment_id, name=f"data-{data.name}-{digest[:8]}", dataset=data.name,
               digest=digest, parent_run_id=None) as run_id:
        log_dataset_input(data, context="dataset", run_id=run_id)
        mlflow.log_params({"dataset": params.dataset, "seed": params.seed, "n_train": data.sizes["train"],
                           "n_val": data.sizes["val"], "n_test": data.sizes["test"],
                           "image_shape": str(data.image_shape), "num_classes": data.num_classes})
        mlflow.log_metrics(baselines)
    return RunRef(run_id=run_id, experiment_id=experiment_id)


@flow(name="prepare_data", result_serializer=RESULTS)
def prepare_data(params: DataParams = DataParams(), evaluation: EvalProfile | None = None,
                 device: str = "auto") -> DatasetRef:
    """Load, validate and split ``params.dataset`` and log it to MLflow with its baselines (and, given the
    ``evaluation`` profile, its reference row); returns its DatasetRef (digest, sizes, baselines)."""
    check_tracking_store()
    summary = load_and_validate(params, evaluation, device)
    logged = run_or_reuse(log_dataset, params, summary["digest"], summary["baselines"])
    return DatasetRef(params=params, experiment_id=logged.experiment_id, run_id=logged.run_id, **summary)
