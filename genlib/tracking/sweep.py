"""A sweep in MLflow: its trials' runs (found by study and number, their end state tagged), a trial's objective
read from its run's metric history, and the parent run's figures (Optuna's optimisation history, parameter
importances, parallel coordinates), trials table, totals and description."""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import mlflow

from genlib.tracking import tags as T

logger = logging.getLogger(__name__)

FIGURES = {"optimization_history": "plot_optimization_history", "param_importances": "plot_param_importances",
           "parallel_coordinate": "plot_parallel_coordinate"}


def metric_at(run_id: str, key: str, step: int) -> float | None:
    """The value of metric ``key`` that run ``run_id`` logged at ``step`` (the last one logged when it has none
    there); None when it never logged ``key``."""
    history = mlflow.MlflowClient().get_metric_history(run_id, key)
    if not history:
        return None
    at = [m.value for m in history if m.step == step]
    return float(at[-1] if at else max(history, key=lambda m: (m.step, m.timestamp)).value)


def trial_runs(experiment_id: str, study: str, number: int) -> list[str]:
    """Ids of the training runs of trial ``number`` of ``study`` (any status; a retried trial has several)."""
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id], f"tags.`{T.SWEEP_STUDY}` = '{study}' and tags.`{T.SWEEP_TRIAL}` = '{number}'",
        max_results=50)
    return [r.info.run_id for r in runs]


def mark_trial(experiment_id: str, study: str, number: int, state: str, note: str = "") -> list[str]:
    """Tag every run of the trial with how it ended (complete, pruned, failed), and ``note`` in its description
    when given; returns the run ids."""
    client = mlflow.MlflowClient()
    ids = trial_runs(experiment_id, study, number)
    for run_id in ids:
        client.set_tag(run_id, T.TRIAL_STATE, state)
        if note:
            client.set_tag(run_id, T.MLFLOW_RUN_NOTE, note)
    return ids


def log_study_figures(run_id: str, study: Any) -> list[str]:
    """Optuna's figures of ``study`` as ``plots/<name>.png`` on run ``run_id``; a figure Optuna cannot draw yet
    (importances need two finished trials) is skipped with a log line. Returns the names logged."""
    import matplotlib
    import optuna

    matplotlib.use("Agg")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "no complete trials": the missing figure says it
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    client = mlflow.MlflowClient()
    logged = []
    for name, function in FIGURES.items():
        try:
            with warnings.catch_warnings():  # "experimental", and few trials to rank: the figure says as much
                warnings.simplefilter("ignore")
                ax = getattr(ovm, function)(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(8, 5)
            client.log_figure(run_id, fig, f"plots/{name}.png")
            plt.close(fig)
            logged.append(name)
        except Exception as err:  # noqa: BLE001 - too few trials for this figure: the others still go in
            logger.info("no %s figure: %s", name, str(err).splitlines()[0] if str(err) else type(err).__name__)
            plt.close("all")
    return logged


def margin_sentence(metric: str, direction: str, best: float | None, preset: float | None,
                    best_number: int | None, preset_number: int | None) -> str:
    """How the winning trial compares with the preset's trial, in words."""
    if best is None or best_number is None:
        return f"No trial finished with a finite {metric}."
    head = f"Trial {best_number} won with {metric} = {best:.5g}"
    if preset is None or preset_number is None:
        return head + "; the preset's trial did not finish, so there is no margin against it."
    if best_number == preset_number:
        return head + ": the preset itself (no trial beat it)."
    gain = (preset - best) if direction == "minimize" else (best - preset)
    rel = f" ({100 * gain / abs(preset):.1f}%)" if preset and math.isfinite(preset) else ""
    word = "lower" if direction == "minimize" else "higher"
    return head + f", {abs(gain):.4g}{rel} {word if gain >= 0 else 'worse'} than the preset's {preset:.5g} " \
                  f"(trial {preset_number})."


def log_sweep(run_id: str, rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, float], note: str,
              best_trial: int | None) -> None:
    """The parent run's trials table (``trials.json``), totals as metrics, best trial tag and description."""
    import pandas as pd
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    if rows:
        client.log_table(run_id, pd.DataFrame(list(rows)), "trials.json")
    now = int(time.time() * 1000)
    finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    if finite:
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in finite.items()], synchronous=True)
    if best_trial is not None:
        client.set_tag(run_id, T.SWEEP_BEST_TRIAL, str(best_trial))
    client.set_tag(run_id, T.MLFLOW_RUN_NOTE, note)


def parent_run_usable(run_id: str | None) -> bool:
    """Whether a sweep's earlier parent run is still in the store (a study outlives a deleted store)."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return False
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return run.info.lifecycle_stage == "active"
