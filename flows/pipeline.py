"""``pipeline``: one data preparation, then train -> evaluate -> register for each family, then the suite
evaluation whose five tables go to one evaluation run.

Training runs on the ``train`` deployment's workers (GPU pool) when a Prefect API is configured and the
deployment exists (``dispatch="auto"``), and in-process otherwise; either way the same ``train`` flow runs.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from genlib.errors import GenlibError

from flows.evaluate import evaluate_logged_model, evaluate_suite_flow
from flows.params import (
    DatasetRef,
    EvaluateParams,
    FamilySummary,
    PipelineParams,
    PipelineResult,
    RegisterParams,
    TrainParams,
    TrainResult,
)
from flows.prepare_data import prepare_data
from flows.register import register_version
from flows.train import resolve_spec, train_family

_FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


class PipelineFailedError(GenlibError):
    """Some families failed; ``result`` holds what the others produced (the CLI prints it)."""

    def __init__(self, message: str, result: PipelineResult | None = None) -> None:
        super().__init__(message, result)  # both in args, so the error pickles (Prefect may persist it)
        self.message, self.result = message, result

    def __str__(self) -> str:
        return self.message


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


@task(cache_policy=NO_CACHE)
def use_train_deployment(dispatch: str, name: str) -> bool:
    """True when training should go to deployment ``name``: asked for, or ``auto`` with an API and the deployment."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    from genlib.errors import ConfigError

    if dispatch == "local":
        return False
    found = False
    if PREFECT_API_URL.value():
        with get_client(sync_client=True) as client:
            try:
                client.read_deployment_by_name(name)
                found = True
            except ObjectNotFound:
                found = False
    if dispatch == "deployment" and not found:
        raise ConfigError(f"dispatch=deployment but no deployment {name!r} on the Prefect API "
                          f"({PREFECT_API_URL.value() or 'none configured'}); run `prefect deploy --all`")
    get_run_logger().info("training %s", f"on deployment {name}" if found else "in-process")
    return found


@task(cache_policy=NO_CACHE, task_run_name="submit_training-{params.family}")
def submit_training(name: str, params: TrainParams) -> str:
    """Start a flow run of deployment ``name`` (as a child of this pipeline run); returns its id."""
    from prefect.deployments import run_deployment

    run = run_deployment(name, parameters={"params": params.model_dump(mode="json")}, timeout=0,
                         flow_run_name=f"train-{params.family}", tags=["genlib", params.family])
    return str(run.id)


@task(cache_policy=NO_CACHE, task_run_name="await_training-{params.family}")
def await_training(flow_run_id: str, params: TrainParams, dataset: DatasetRef, poll_seconds: float = 2.0) -> TrainResult:
    """Wait for a deployment run of ``train``, then find its MLflow run by config key (cached or new)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    from genlib.tracking.runs import CONFIG_KEY_TAG, KIND_TAG, latest_run

    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(UUID(flow_run_id))
            if run.state is not None and run.state.type.value in _FINAL:
                break
            time.sleep(poll_seconds)
    if run.state.type.value != "COMPLETED":
        raise GenlibError(f"training {params.family} on the worker ended {run.state.name}: {run.state.message or ''}")
    key = resolve_spec.fn(params, dataset.digest).config_key
    found = latest_run({KIND_TAG: "train", CONFIG_KEY_TAG: key}, [dataset.experiment_id])
    if found is None or not found.outputs or not found.outputs.model_outputs:
        raise GenlibError(f"training {params.family} completed on the worker but no finished MLflow run has "
                          f"config key {key[:12]}; do the worker and the pipeline share the tracking server?")
    model_id = found.outputs.model_outputs[0].model_id
    metrics = dict(found.data.metrics)
    return TrainResult(run_id=found.info.run_id, model_uri=f"models:/{model_id}", model_id=model_id,
                       family=params.family, config_key=key, metrics=metrics,
                       train_seconds=float(metrics.get("train_seconds", 0.0)),
                       device=found.data.tags.get("genlib.device", "?"),
                       cached=found.data.tags.get("genlib.prefect_flow_run_id") != flow_run_id)


@flow(name="pipeline")
def pipeline(params: PipelineParams = PipelineParams()) -> PipelineResult:
    """Prepare the data, then train, evaluate and register every family in ``params.models``, then the suite."""
    import mlflow

    logger = get_run_logger()
    t_start = time.perf_counter()
    # Compute (train, evaluate, suite) and MLflow logging measured inside the tasks; the rest is orchestration.
    seconds: dict[str, float] = {"train": 0.0, "evaluate": 0.0, "suite": 0.0, "tracking": 0.0}
    dataset = prepare_data(params.data)
    remote = use_train_deployment(params.dispatch, params.train_deployment)
    train_params = {f: params.train_params(f, dataset.digest) for f in params.models}
    submitted: dict[str, Any] = {}
    if remote:  # start every training first, so several GPU workers can take them at once
        for family in params.models:
            submitted[family] = submit_training(params.train_deployment, train_params[family], return_state=True)

    summaries: list[FamilySummary] = []
    eval_runs: dict[str, str] = {}
    for family in params.models:
        summary = FamilySummary(family=family)
        try:
            # Steps run as this flow's tasks (a child flow run per step would cost about a second each).
            if remote:
                flow_run_id = submitted[family].result()
                trained = await_training(flow_run_id, train_params[family], dataset)
            else:
                trained = train_family(train_params[family], dataset.digest)
            summary = summary.model_copy(update={"train": trained})
            if not trained.cached:
                seconds["train"] += trained.train_seconds
                seconds["tracking"] += trained.tracking_seconds
            evaluated = evaluate_logged_model(EvaluateParams(
                model_uri=trained.model_uri, data=params.data, profile=params.evaluation_profile,
                eval_overrides=params.eval_overrides, device=params.device, train_run_id=trained.run_id,
                expected_digest=dataset.digest), dataset.digest, label=family)
            summary = summary.model_copy(update={"evaluation": evaluated})
            eval_runs[family] = evaluated.run_id
            if not evaluated.cached:
                seconds["evaluate"] += evaluated.eval_seconds
                seconds["tracking"] += evaluated.tracking_seconds
            metrics = {**dataset.baselines, **trained.metrics, **evaluated.metrics}
            registered = register_version.with_options(task_run_name=f"register_version-{family}")(RegisterParams(
                run_id=trained.run_id, model_uri=trained.model_uri, family=family, dataset=dataset.name,
                dataset_digest=dataset.digest, metrics=metrics))
            summary = summary.model_copy(update={"registration": registered})
        except Exception as err:  # one family's failure must not stop the others
            logger.error("%s failed: %s", family, _first_line(err))
            summary = summary.model_copy(update={"error": _first_line(err)})
        summaries.append(summary)

    report_run_id = None
    if params.suite and eval_runs:
        report_run_id, seconds["suite"] = evaluate_suite_flow(dataset, params.evaluation_profile,
                                                              params.eval_overrides, params.device, eval_runs)
    seconds["total"] = time.perf_counter() - t_start
    result = PipelineResult(dataset=dataset, families=summaries, report_run_id=report_run_id,
                            tracking_uri=mlflow.get_tracking_uri(), seconds=seconds)
    failed = [s.family for s in summaries if s.error]
    if failed:
        raise PipelineFailedError(f"{len(failed)} of {len(summaries)} families failed: {', '.join(failed)}", result)
    return result
