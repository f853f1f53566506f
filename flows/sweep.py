"""``sweep``: an Optuna study of one family (TPE, median pruning on the per-epoch validation metric) whose
trials run the ``train`` flow where the execution plan says, then the best trial evaluated and registered
through the pipeline's gates, all under one ``sweep`` MLflow run.

The flow is the study's driver: it asks Optuna for each trial's settings, runs at most ``parallel`` trials at
once (a local pool of that many processes, or runs of the ``train`` deployment on any worker, under a Prefect
global concurrency limit of that size), and tells Optuna how each ended. The same parameters again continue
the study (genlib.sweep.study: finished trials kept, interrupted ones re-queued).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import load_data, track
from flows.params import DatasetRef, TrainParams, TrainResult
from flows.pipeline import use_train_deployment
from flows.pool_stop import end_worker_processes
from flows.prepare_data import prepare_data
from flows.sweep_params import SweepParams, SweepResult, TrialOutcome
from flows.sweep_report import finish_sweep
from flows.sweep_trials import run_trial
from genlib.plan import ExecutionPlan


@task(cache_policy=NO_CACHE, persist_result=False)
def set_concurrency_limit(name: str, slots: int) -> str:
    """Create (or resize) the global concurrency limit ``name`` with ``slots`` slots; returns its name."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, slots)
    return name


def _runner(plan: ExecutionPlan, params: SweepParams) -> Any:
    """The task runner trials are submitted to: a pool of ``plan.workers`` processes, or threads (one trial at
    a time in this process; ``parallel`` threads that each wait for a deployment run)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.local_pool import start_processes

    if plan.mode == "pool":
        return start_processes(plan, params.data, plan.workers)
    workers = params.parallel if plan.mode == "deployment" else 1
    return ThreadPoolTaskRunner(max_workers=workers).__enter__()


def _submit(runner: Any, study: Any, storage: Any, params: SweepParams, space: Any, plan: ExecutionPlan,
            dataset: DatasetRef, shape: Any, context: dict[str, Any]) -> tuple[Any, Any] | TrialOutcome:
    """Ask the study for a trial and submit it; a trial whose settings the family refuses fails at once."""
    from genlib.errors import GenlibError
    from genlib.spec import resolve_spec
    from genlib.sweep import study as S
    from genlib.sweep.refs import TrialRef

    trial = study.ask(S.distributions(space))
    preset = bool(trial.user_attrs.get(S.ATTR_PRESET))
    pins = {"model": params.overrides.model, "train": params.overrides.train,
            "evaluation": params.overrides.evaluation}
    try:
        spec = resolve_spec(params.profile, params.family, S.trial_overrides(trial.params, pins), shape)
    except GenlibError as err:
        S.mark_started(trial, 0)
        return TrialOutcome(number=trial.number, state="failed", params=dict(trial.params), error=str(err), preset=preset)
    S.mark_started(trial, spec.train.epochs)
    ref = TrialRef(study=params.study_name, number=trial.number,
                   trial_id=S.trial_id(storage, params.study_name, trial.number),
                   storage=S.shareable(context["storage_url"]), prune_on=space.prune_on,
                   pruner=params.pruner)
    context["heartbeat"].add(ref.trial_id)
    remote = params.train_deployment if plan.mode == "deployment" else None
    train_params = TrainParams(family=params.family, profile=params.profile, data=params.data, spec=spec,
                               device=params.device if remote else plan.device, expected_digest=dataset.digest,
                               parent_run_id=context["parent"], retrain=True, trial=ref)
    future = runner.submit(run_trial, {
        "params": params, "metric": space.metric, "train_params": train_params, "dataset": dataset,
        "limit": context["limit"], "remote": remote, "parent_run_id": context["parent"], "device": plan.device,
        "epochs": spec.train.epochs, "preset": preset, "sampled": dict(trial.params)})
    return future, ref


def tell(study: Any, storage: Any, outcome: TrialOutcome, experiment_id: str, study_name: str) -> None:
    """Record ``outcome`` in the study (its attributes first: a finished trial takes none) and its training
    run's ``genlib.sweep.trial_state`` tag."""
    from optuna.trial import TrialState

    from genlib.tracking.sweep import mark_trial

    attrs: dict[str, Any] = {"state": outcome.state, "epochs_run": outcome.epochs_run}
    if outcome.train is not None:
        attrs["train"] = outcome.train.model_dump(mode="json")
    if outcome.error:
        attrs["error"] = outcome.error[:500]
    tid = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), outcome.number)
    for key, value in attrs.items():
        storage.set_trial_user_attr(tid, key, value)
    if outcome.state == "complete":
        study.tell(outcome.number, outcome.value)
    else:
        study.tell(outcome.number, state=TrialState.PRUNED if outcome.state == "pruned" else TrialState.FAIL)
    mark_trial(experiment_id, study_name, outcome.number, outcome.state)


def run_trials(study: Any, storage: Any, params: SweepParams, space: Any, plan: ExecutionPlan,
               dataset: DatasetRef, context: dict[str, Any]) -> list[TrialOutcome]:
    """``params.trials`` trials, at most ``params.parallel`` in flight; returns their outcomes in order."""
    from prefect.futures import as_completed

    from genlib.spec import data_shape
    from genlib.sweep.study import Heartbeat

    logger = get_run_logger()
    shape = data_shape(load_data(params.data, expected_digest=dataset.digest))
    runner = _runner(plan, params)
    outcomes: list[TrialOutcome] = []
    running: dict[Any, Any] = {}
    try:
        with Heartbeat(storage) as heartbeat:
            context["heartbeat"] = heartbeat
            left = params.trials
            while left or running:
                while left and len(running) < params.parallel:
                    left -= 1
                    submitted = _submit(runner, study, storage, params, space, plan, dataset, shape, context)
                    if isinstance(submitted, TrialOutcome):
                        tell(study, storage, submitted, dataset.experiment_id, params.study_name)
                        outcomes.append(submitted)
                    else:
                        running[submitted[0]] = submitted[1]
                if not running:
                    continue
                done = next(as_completed(list(running)))
                ref = running.pop(done)
                heartbeat.discard(ref.trial_id)
                try:
                    outcome = done.result()
                except Exception as err:  # noqa: BLE001 - the worker process itself died
                    outcome = TrialOutcome(number=ref.number, state="failed", error=str(err).splitlines()[0][:300])
                tell(study, storage, outcome, dataset.experiment_id, params.study_name)
                logger.info("trial %d %s%s", outcome.number, outcome.state,
                            f": {space.metric} = {outcome.value:.5g}" if outcome.value is not None else
                            f" ({outcome.error})" if outcome.error else "")
                outcomes.append(outcome)
    except BaseException as err:
        if plan.mode == "pool":  # stopped (Ctrl-C, SIGTERM): the trials in the worker processes stop too
            end_worker_processes(err, list(running))
        raise
    finally:
        runner.__exit__(None, None, None)
    return sorted(outcomes, key=lambda o: o.number)


@flow(name="sweep", persist_result=False)
def sweep(params: SweepParams) -> SweepResult:
    """Run ``params.trials`` trials of an Optuna study of ``params.family`` (continuing it when it exists), then
    evaluate and register the best trial; everything under one ``sweep`` MLflow run."""
    from genlib.sweep import study as S
    from genlib.tracking.cleanup import end_runs_on_signal, mark_stale_runs
    from genlib.tracking.sweep import parent_run_usable

    t0 = time.perf_counter()
    plan = params.plan or params.resolve_plan()
    plan = plan.settle(use_train_deployment(plan.dispatch, params.train_deployment))
    space = params.resolved_space()
    url = params.storage or S.resolve_storage()
    if params.resume:
        S.require_study(params.study_name, url)
    dataset = prepare_data(params.data)
    mark_stale_runs()
    end_runs_on_signal()
    storage = S.open_storage(url)
    study = S.open_study(params.study_name, storage, space, dataset.name, params.pruner)
    recovered = S.recover_interrupted(study)
    if recovered:
        get_run_logger().info("trials %s were interrupted: marked failed, their settings queued again",
                              ", ".join(map(str, recovered)))
    earlier = study.user_attrs.get(S.ATTR_PARENT_RUN)
    reopen = earlier if parent_run_usable(earlier) else None
    limit = set_concurrency_limit(f"genlib-sweep-{params.study_name}", params.parallel)
    with track("sweep", experiment_id=dataset.experiment_id, name=f"sweep-{params.study_name}",
               dataset=dataset.name, digest=dataset.digest, run_id=reopen,
               tags={"genlib.model": params.family, "genlib.profile": params.profile,
                     "genlib.sweep.study": params.study_name}) as parent:
        study.set_user_attr(S.ATTR_PARENT_RUN, parent)
        from genlib.spec import data_shape, resolve_spec

        preset_spec = resolve_spec(params.profile, params.family, params.overrides,
                                   data_shape(load_data(params.data, expected_digest=dataset.digest)))
        S.enqueue_preset(study, space, preset_spec)
        context = {"parent": parent, "limit": limit, "storage_url": url}
        outcomes = run_trials(study, storage, params, space, plan, dataset, context)
        return finish_sweep(study, params, space, plan, dataset, parent, outcomes, S.redact(url),
                            time.perf_counter() - t0)

