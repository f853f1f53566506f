"""``pipeline``: one data preparation, then train -> evaluate -> register for each family, then the suite
evaluation (its sections as jobs) whose tables go to one report run.

Where and how it runs is ``params.plan`` (genlib.plan.ExecutionPlan), resolved by the entry point; a run
without one (started by a schedule) resolves it first thing, being its own entry point. The flow settles
only the plan's ``dispatch="auto"`` (:func:`use_train_deployment`: it needs the Prefect API): training then
runs on the ``train`` deployment's workers, or here, in a local pool or in this process; either way the
same ``train`` flow runs.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from genlib.errors import GenlibError
from genlib.spec import RunSpec

from flows.common import load_data, track
from flows.evaluate import evaluate_suite_flow
from flows.family import run_family
from flows.local_pool import run_on_pool, start_pool, wait_for_stopped_workers
from flows.params import (
    DatasetRef,
    FamilySummary,
    PipelineParams,
    PipelineResult,
    TrainParams,
    TrainResult,
)
from flows.prepare_data import prepare_data, record_reference
from flows.results import RESULTS
from flows.train import train_family

_FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


class PipelineFailedError(GenlibError):
    """Some families failed; ``result`` holds what the others produced (the CLI prints it)."""

    def __init__(self, message: str, result: PipelineResult | None = None) -> None:
        super().__init__(message, result)  # both in args, so the error pickles (Prefect may persist it)
        self.message, self.result = message, result

    def __str__(self) -> str:
        return self.message


@task(cache_policy=NO_CACHE)
def use_train_deployment(dispatch: str, name: str) -> bool:
    """True when training should go to deployment ``name``: asked for, or ``auto`` with an API, the deployment
    and a worker online in its pool (a deployment left behind by a stopped stack would wait for ever)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import WorkPoolStatus
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    from genlib.errors import ConfigError

    if dispatch == "local":
        return False
    found, ready, pool = False, False, None
    if PREFECT_API_URL.value():
        with get_client(sync_client=True) as client:
            try:
                deployment = client.read_deployment_by_name(name)
                found, pool = True, deployment.work_pool_name
                # READY: at least one worker of the pool has sent a heartbeat lately.
                ready = pool is None or client.read_work_pool(pool).status == WorkPoolStatus.READY
            except ObjectNotFound:
                found = False
    if dispatch == "deployment" and not found:
        raise ConfigError(f"dispatch=deployment but no deployment {name!r} on the Prefect API "
                          f"({PREFECT_API_URL.value() or 'none configured'}); run `prefect deploy --all`")
    if dispatch == "deployment":
        return True  # asked for: its runs wait for a worker
    use = found and ready
    get_run_logger().info("training %s", f"on deployment {name}" if use else
                          f"in-process (deployment {name} found, but no worker of pool {pool} is online)" if found
                          else "in-process")
    return use


@task(cache_policy=NO_CACHE)
def resolve_specs(params: PipelineParams, dataset: DatasetRef) -> dict[str, RunSpec]:
    """Each family's RunSpec for the prepared data (its image shape and classes), resolved once here."""
    from genlib.spec import data_shape, resolve_spec

    shape = data_shape(load_data(params.data, expected_digest=dataset.digest))
    return {f: resolve_spec(params.profile, f, params.overrides(f), shape) for f in params.models}


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

    from genlib.tracking import tags as T
    from genlib.tracking.runs import latest_run

    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(UUID(flow_run_id))
            if run.state is not None and run.state.type.value in _FINAL:
                break
            time.sleep(poll_seconds)
    if run.state.type.value != "COMPLETED":
        raise GenlibError(f"training {params.family} on the worker ended {run.state.name}: {run.state.message or ''}")
    key = params.spec.cache_key(dataset.digest)
    found = latest_run({T.KIND: "train", T.CONFIG_KEY: key}, [dataset.experiment_id])
    if found is None or not found.outputs or not found.outputs.model_outputs:
        raise GenlibError(f"training {params.family} completed on the worker but no finished MLflow run has "
                          f"config key {key[:12]}; do the worker and the pipeline share the tracking server?")
    model_id = found.outputs.model_outputs[0].model_id
    tags = found.data.tags
    seconds = float(tags.get(T.TRAIN_SECONDS, 0.0))
    metrics = {"epochs_run": float(tags.get(T.EPOCHS_RUN, 0)), "best_epoch": float(tags.get(T.BEST_EPOCH, 0)),
               "train_seconds": seconds, "tracking_seconds": float(tags.get(T.TRACKING_SECONDS, 0.0))}
    return TrainResult(run_id=found.info.run_id, model_uri=f"models:/{model_id}", model_id=model_id,
                       family=params.family, config_key=key, metrics=metrics, train_seconds=seconds,
                       device=found.data.tags.get(T.DEVICE, "?"),
                       cached=found.data.tags.get(T.PREFECT_FLOW_RUN_ID) != flow_run_id)


def stop_if_tracking_lost(summaries: list[FamilySummary], models: list[str]) -> None:
    """Before starting the next family (or after parallel workers ran them all): when the tracking server no
    longer answers, go no further. Raises TrackingUnavailableError naming the server, what finished and what
    did not (nothing of those was registered); the interrupted runs are left for the stale-run clean-up
    when the server is back."""
    from genlib.tracking import TrackingUnavailableError, check_tracking, resolve_tracking

    target = resolve_tracking()
    try:
        check_tracking(target, timeout=5)
    except TrackingUnavailableError:
        done = [s.family for s in summaries if s.registration is not None]
        left = [f for f in models if f not in done]
        raise TrackingUnavailableError(
            f"MLflow tracking server {target.uri} became unreachable; finished: {', '.join(done) or 'none'}; "
            f"not finished (nothing registered): {', '.join(left)}") from None


def _seconds(summaries: list[FamilySummary]) -> dict[str, float]:
    """Compute (train, evaluate) and MLflow logging measured inside the tasks, for work not taken from the cache."""
    out = {"train": 0.0, "evaluate": 0.0, "tracking": 0.0}
    for s in summaries:
        if s.train is not None and not s.train.cached:
            out["train"] += s.train.train_seconds
            out["tracking"] += s.train.tracking_seconds
        if s.evaluation is not None and not s.evaluation.cached:
            out["evaluate"] += s.evaluation.eval_seconds
            out["tracking"] += s.evaluation.tracking_seconds
    return out


@flow(name="pipeline", result_serializer=RESULTS)
def pipeline(params: PipelineParams = PipelineParams()) -> PipelineResult:
    """Prepare the data, then train, evaluate and register every family in ``params.models``, then the suite,
    all nested under one ``pipeline`` MLflow run that holds the summary table."""
    import mlflow

    from genlib.models.catalog import model_info
    from genlib.tracking import tags as T
    from genlib.tracking.cleanup import end_runs_on_signal, mark_stale_runs
    from genlib.tracking.links import ui_url

    t_start = time.perf_counter()
    plan = params.plan or params.resolve_plan()  # a scheduled run is its own entry point
    plan = plan.settle(use_train_deployment(plan.dispatch, params.train_deployment))  # the one call on "auto"
    params = params.model_copy(update={"plan": plan})  # what every step below reads
    # The pool's worker processes start first: their imports run while this process prepares the data and the runs.
    runner = start_pool(params) if plan.mode == "pool" else None
    all_models = params.models
    try:
        # The data's reference row (the sample-quality gates' yardstick) is only needed when something samples.
        # On a pool, the first job that needs it computes it (disk-cached), so that the workers do not wait for a
        # feature space to train here; it is logged on the data run afterwards (record_reference).
        sampling = any(model_info(f).generates for f in params.models)
        here = sampling and plan.mode != "pool"
        dataset = prepare_data(params.data, params.evaluation() if here else None, plan.device)
        params, skipped = params.without_label_needing(dataset)  # conditional families on unlabelled data
    except BaseException:
        if runner is not None:
            runner.close(wait=True)
        raise
    mark_stale_runs()  # runs left RUNNING by a killed process of this host -> FAILED, with a note
    end_runs_on_signal()  # SIGTERM/SIGINT end this process's runs as KILLED (a no-op off the main thread)
    if skipped:
        get_run_logger().info("skipped %s: %s", ", ".join(skipped), next(iter(skipped.values())))
    remote = plan.mode == "deployment"
    with track("pipeline", experiment_id=dataset.experiment_id, name=f"pipeline-{params.profile}-{dataset.name}",
               dataset=dataset.name, digest=dataset.digest,
               tags={T.PROFILE: params.profile, T.EVAL_PROFILE: params.evaluation_profile,
                     T.MODELS: ",".join(params.models)}) as parent_run_id, contextlib.ExitStack() as at_end:
        # The pool's worker processes exit in the background while the suite and the summary are logged;
        # they are gone (their last events passed on) before this run ends, whatever the exit.
        at_end.callback(wait_for_stopped_workers)
        specs = resolve_specs(params, dataset)
        train_params = {f: params.train_params(specs[f], dataset.digest, parent_run_id) for f in params.models}
        if remote:  # start every training first, so several GPU workers can take them at once
            submitted = {f: submit_training(params.train_deployment, train_params[f], return_state=True)
                         for f in params.models}

            def trained_by(f: str) -> Any:
                return lambda: await_training(submitted[f].result(), train_params[f], dataset)
        else:
            def trained_by(f: str) -> Any:
                return lambda: train_family(train_params[f], dataset.digest)

        sections, pool = {}, {}
        if plan.mode == "pool":
            get_run_logger().info("families%s on %d workers (a thread of this process and %d worker process%s)",
                                  " and the suite" if params.suite else "", plan.workers, plan.workers - 1,
                                  "es" if plan.workers > 2 else "")
            t_pool = time.perf_counter()
            summaries, sections = run_on_pool(params, dataset, train_params, parent_run_id, runner)
            pool = {"workers": float(plan.workers), "pool": time.perf_counter() - t_pool}
            stop_if_tracking_lost(summaries, params.models)
        else:
            summaries = []
            for family in params.models:
                if summaries:  # prepare_data has just checked it for the first
                    stop_if_tracking_lost(summaries, params.models)
                summaries.append(run_family(family, params, dataset, trained_by(family)))
        done = {s.family: s for s in summaries}
        summaries = [done.get(f) or FamilySummary(family=f, skipped=skipped[f]) for f in all_models]
        if sampling and not here:
            dataset = record_reference(dataset, params.evaluation(), plan.device)
        seconds = {**_seconds(summaries), "suite": 0.0, **pool}
        eval_runs = {s.family: s.evaluation.run_id for s in summaries if s.evaluation is not None}
        report = None
        if params.suite and eval_runs:
            report = evaluate_suite_flow(dataset, params.evaluation(), plan.device, eval_runs, sections)
            seconds["suite"] = report.seconds
        seconds["total"] = time.perf_counter() - t_start
        result = PipelineResult(dataset=dataset, families=summaries, run_id=parent_run_id,
                                report_run_id=report.run_id if report else None,
                                tracking_uri=mlflow.get_tracking_uri(), seconds=seconds)
        log_summary(parent_run_id, result)
        url = ui_url(dataset.experiment_id, parent_run_id)
        get_run_logger().info("MLflow pipeline run %s%s", parent_run_id, f": {url}" if url else "")
        failed = [s.family for s in summaries if s.error]
        if failed:
            raise PipelineFailedError(f"{len(failed)} of {len(summaries)} families failed: {', '.join(failed)}",
                                      result)
    return result


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def log_summary(run_id: str, result: PipelineResult) -> None:
    """The summary table (one row per family: runs, version, aliases, why) into the pipeline run."""
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from genlib.tracking import tags as T

    client = MlflowClient()
    rows = [summary_row(s) for s in result.families]
    client.log_table(run_id, pd.DataFrame(rows), "summary.json")
    done = sum(1 for s in result.families if s.registration is not None)
    client.set_tag(run_id, T.MLFLOW_RUN_NOTE, f"Pipeline on {result.dataset.name}: {done} of {len(rows)} families "
                   "registered; one row per family in summary.json, the runs nested below.")
    client.log_dict(run_id, result.model_dump(mode="json"), "pipeline_result.json")
    now = int(time.time() * 1000)
    metrics = {f"{k}_seconds": v for k, v in result.seconds.items()}
    metrics["families_failed"] = float(sum(1 for s in result.families if s.error))
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()], synchronous=True)


def summary_row(s: FamilySummary) -> dict[str, Any]:
    reg = s.registration
    return {"family": s.family, "train_run_id": s.train.run_id if s.train else None,
            "eval_run_id": s.evaluation.run_id if s.evaluation else None,
            "cached": bool(s.train and s.train.cached), "version": reg.version if reg else None,
            "aliases": ",".join(reg.aliases) if reg else "", "promoted": bool(reg and reg.promoted),
            "reason": reg.reason if reg else s.skipped, "error": s.error}
