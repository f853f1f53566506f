"""The end of a sweep: the study's best trial evaluated and registered through the pipeline's gates (the same
steps as one family of the pipeline, flows/family.py), then the parent run's figures, trials table, totals
and description (which trial won, and by how much against the preset's trial)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.family import run_family
from flows.params import DatasetRef, PipelineParams, TrainResult
from flows.sweep_params import SweepParams, SweepResult, TrialOutcome
from genlib.plan import ExecutionPlan


def best_train(study: Any) -> tuple[int | None, float | None, TrainResult | None]:
    """(number, value, training result) of the study's best finished trial; Nones when none finished."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None, None, None
    best = study.best_trial
    train = best.user_attrs.get("train")
    return best.number, best.value, TrainResult.model_validate(train) if train else None


def preset_value(study: Any) -> tuple[int | None, float | None, TrainResult | None]:
    """(number, value, training result) of the study's finished preset trial (trial 0 of a new study); Nones
    when it did not finish."""
    from optuna.trial import TrialState

    from genlib.sweep.study import ATTR_PRESET

    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get(ATTR_PRESET):
            train = t.user_attrs.get("train")
            return t.number, t.value, TrainResult.model_validate(train) if train else None
    return None, None, None


def evaluate_preset(params: SweepParams, plan: ExecutionPlan, dataset: DatasetRef, train: TrainResult) -> dict:
    """The preset trial's evaluation metrics (the same evaluation as the best's, so the two compare on the
    family's primary metric and sample quality); empty when it fails."""
    from flows.evaluate import evaluate_logged_model
    from flows.params import EvaluateParams
    from genlib.tracking.runs import nested_under

    try:
        with nested_under(train.run_id):
            return dict(evaluate_logged_model(EvaluateParams(
                model_uri=train.model_uri, data=params.data, profile=params.profile,
                eval_overrides=params.overrides.evaluation, device=plan.device, train_run_id=train.run_id,
                expected_digest=dataset.digest), dataset.digest, label="preset").metrics)
    except Exception as err:  # noqa: BLE001 - the comparison is extra; the sweep's result stands without it
        get_run_logger().warning("the preset trial's evaluation failed: %s", str(err).splitlines()[0] if str(err) else err)
        return {}


def epochs_saved(study: Any) -> int:
    """Planned epochs that the study's pruned trials did not run."""
    from optuna.trial import TrialState

    from genlib.sweep.study import ATTR_EPOCHS

    saved = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        planned, ran = int(t.user_attrs.get(ATTR_EPOCHS, 0)), int(t.user_attrs.get("epochs_run", 0))
        saved += max(0, planned - ran)
    return saved


@task(cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=2)
def log_parent(run_id: str, study: Any, rows: list[dict[str, Any]], metrics: dict[str, float], note: str,
               best: int | None) -> list[str]:
    """Optuna's figures, the trials table, totals and description on the sweep's parent run."""
    from genlib.tracking.sweep import log_study_figures, log_sweep

    figures = log_study_figures(run_id, study)
    log_sweep(run_id, rows, metrics, note, best)
    return figures


def _rows(study: Any) -> list[dict[str, Any]]:
    return [{"trial": t.number, "state": t.state.name.lower(), "value": t.value,
             "preset": bool(t.user_attrs.get("preset")), "epochs_run": t.user_attrs.get("epochs_run"),
             "run_id": (t.user_attrs.get("train") or {}).get("run_id"), "error": t.user_attrs.get("error"),
             **{k: str(v) for k, v in t.params.items()}} for t in study.get_trials(deepcopy=False)]


def finish_sweep(study: Any, params: SweepParams, space: Any, plan: ExecutionPlan, dataset: DatasetRef,
                 parent: str, outcomes: list[TrialOutcome], storage: str, seconds: float) -> SweepResult:
    """Register the best trial (gates, champion only if it beats the current one) and describe the sweep."""
    from optuna.trial import TrialState

    from genlib.models.catalog import model_info
    from genlib.tracking.sweep import margin_sentence
    from genlib.tracking.version_page import run_link

    logger = get_run_logger()
    number, value, train = best_train(study)
    preset_number, preset, preset_train = preset_value(study)
    registration, error, best_metrics, preset_metrics = None, None, {}, {}
    if train is not None:
        local = plan if plan.dispatch == "local" else plan.model_copy(update={"dispatch": "local"})
        family_params = PipelineParams(data=params.data, models=[params.family], profile=params.profile,
                                       eval_overrides=params.overrides.evaluation, suite=False, plan=local)
        summary = run_family(params.family, family_params, dataset, lambda: train)
        registration, error = summary.registration, summary.error
        best_metrics = dict(summary.evaluation.metrics) if summary.evaluation is not None else {}
        if preset_train is not None:
            preset_metrics = (best_metrics if preset_number == number
                              else evaluate_preset(params, local, dataset, preset_train))
    else:
        error = "no trial finished"
    counts = {s: len(study.get_trials(deepcopy=False, states=(st,))) for s, st in
              (("complete", TrialState.COMPLETE), ("pruned", TrialState.PRUNED), ("failed", TrialState.FAIL))}
    saved = epochs_saved(study)
    total = len(study.get_trials(deepcopy=False))
    margin = margin_sentence(space.metric, space.direction, value, preset, number, preset_number)
    primary = model_info(params.family).primary_metric
    if primary != space.metric and primary in best_metrics and primary in preset_metrics:
        margin += f" On the primary metric: {primary} {best_metrics[primary]:.5g} against the preset's " \
                  f"{preset_metrics[primary]:.5g}."
    if registration is not None:
        reg = (f" Its model is {registration.name} version {registration.version}: "
               f"{'champion' if registration.promoted else 'not champion'} ({registration.reason}).")
    else:
        reg = f" Nothing registered: {error}."
    best_link = ""
    if train is not None:
        best_link = f" Its run: [{train.run_id[:8]}]({run_link(dataset.experiment_id, train.run_id)})."
    note = (f"Sweep of {params.family} on {dataset.name}: Optuna study {params.study_name} ({storage}), "
            f"{space.direction} {space.metric}. {total} trials: {counts['complete']} complete, {counts['pruned']} "
            f"pruned, {counts['failed']} failed ({len(outcomes)} run by the latest command); pruning saved {saved} "
            f"epochs. {margin}{best_link}{reg}")
    metrics = {"trials": float(total), **{f"trials_{k}": float(v) for k, v in counts.items()},
               "epochs_saved": float(saved), "best_value": value, "preset_value": preset,
               **{f"best_{k}": v for k, v in best_metrics.items() if k == primary},
               **{f"preset_{k}": v for k, v in preset_metrics.items() if k == primary}}
    log_parent(parent, study, _rows(study), {k: v for k, v in metrics.items() if v is not None}, note, number)
    logger.info(note)
    return SweepResult(study=params.study_name, storage=storage, run_id=parent, experiment_id=dataset.experiment_id,
                       trials=outcomes, total_trials=total, best_number=number, best_value=value,
                       preset_value=preset, best_metrics=best_metrics, preset_metrics=preset_metrics,
                       metric=space.metric, direction=space.direction,
                       epochs_saved=saved, registration=registration, error=error, seconds=seconds)
