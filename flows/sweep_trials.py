"""One sweep trial as a task: the ``train`` flow's steps here (in a local pool worker or the sweep's own
process) or a run of the ``train`` deployment on any worker, under the sweep's global concurrency limit;
then the trial's objective. A trial that raises comes back ``failed`` (the sweep goes on), one the study
pruned comes back ``pruned``."""

from __future__ import annotations

import math
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.params import DatasetRef, EvaluateParams, TrainParams, TrainResult
from flows.sweep_params import SweepParams, TrialOutcome


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


def weights_step(result: TrainResult, patience: int | None) -> int:
    """The epoch whose weights the trial's model holds (flows.train.weights_epoch, from the result's numbers)."""
    best, run = int(result.metrics.get("best_epoch", 0)), int(result.metrics.get("epochs_run", 0))
    return best if patience is not None and best else run


def objective(params: SweepParams, metric: str, train_params: TrainParams, result: TrainResult,
              dataset: DatasetRef, device: str) -> float | None:
    """The trial's objective: ``metric`` at the weights' epoch from its training run (``val_*``), or measured by
    evaluating its model (the evaluation run nests under the trial's run)."""
    from flows.evaluate import evaluate_logged_model
    from genlib.tracking.runs import nested_under
    from genlib.tracking.sweep import metric_at

    if metric.startswith("val_"):
        return metric_at(result.run_id, metric, weights_step(result, train_params.spec.train.patience))
    with nested_under(result.run_id):
        evaluated = evaluate_logged_model(EvaluateParams(
            model_uri=result.model_uri, data=params.data, profile=params.profile,
            eval_overrides=params.overrides.evaluation, device=device, train_run_id=result.run_id,
            expected_digest=dataset.digest), dataset.digest, label=f"trial-{train_params.trial.number}")
    value = evaluated.metrics.get(metric)
    if value is None:
        from genlib.errors import ConfigError

        raise ConfigError(f"metric {metric}: the evaluation reports no such metric; it reports "
                          f"{', '.join(sorted(evaluated.metrics))}")
    return float(value)


def train_remote(deployment: str, train_params: TrainParams, dataset: DatasetRef) -> TrainResult:
    """A run of ``deployment`` (as a child of this task run), waited for; its MLflow run found by config key."""
    from prefect.deployments import run_deployment

    from flows.pipeline import await_training

    number = train_params.trial.number
    run = run_deployment(deployment, parameters={"params": train_params.model_dump(mode="json")}, timeout=0,
                         flow_run_name=f"trial-{number}-{train_params.family}", tags=["genlib", "sweep"])
    return await_training.fn(str(run.id), train_params, dataset)


@task(cache_policy=NO_CACHE, persist_result=False, task_run_name="trial-{train_params.trial.number}")
def run_trial(params: SweepParams, metric: str, train_params: TrainParams, dataset: DatasetRef, limit: str,
              remote: str | None, parent_run_id: str, device: str, epochs: int, preset: bool,
              sampled: dict[str, Any]) -> TrialOutcome:
    """Train (and, for an evaluation metric, evaluate) one trial while holding a slot of the concurrency limit
    ``limit``; returns its outcome, never raises for the trial's own failure."""
    from prefect.concurrency.sync import concurrency

    from flows.train import train_family
    from genlib.sweep.study import pruned_at
    from genlib.sweep.trial import TrialPrunedError
    from genlib.tracking.runs import nested_under

    ref = train_params.trial
    base = dict(number=ref.number, params=sampled, epochs_planned=epochs, preset=preset)
    result = None
    try:
        with concurrency(limit, occupy=1, strict=False):
            with nested_under(parent_run_id):
                result = (train_remote(remote, train_params, dataset) if remote
                          else train_family(train_params, dataset.digest))
                value = objective(params, metric, train_params, result, dataset, device)
    except TrialPrunedError as err:
        return TrialOutcome(**base, state="pruned", epochs_run=err.epoch)
    except Exception as err:  # noqa: BLE001 - a trial that raises is recorded failed; the sweep goes on
        epoch = pruned_at(ref) if remote else None
        if epoch is not None:  # the remote run was stopped by the pruner
            return TrialOutcome(**base, state="pruned", epochs_run=epoch)
        get_run_logger().warning("trial %d failed: %s", ref.number, _first_line(err))
        return TrialOutcome(**base, state="failed", train=result, error=_first_line(err))
    epochs_run = int(result.metrics.get("epochs_run", epochs))

    if value is None or not math.isfinite(value):
        return TrialOutcome(**base, state="failed", train=result, epochs_run=epochs_run,
                            error=f"no finite {metric} in the trial's run")
    return TrialOutcome(**base, state="complete", value=value, train=result, epochs_run=epochs_run)

