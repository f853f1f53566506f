"""One family's part of the pipeline: train (or take a worker's result), evaluate, register.

Called by the pipeline flow in its own process (flows/pipeline.py) and by the local pool's worker jobs
(flows/local_pool.py), which is why it lives in neither.
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import get_run_logger

from genlib.models.catalog import model_info

from flows.evaluate import evaluate_logged_model
from flows.prepare_data import reference_metrics
from flows.params import DatasetRef, EvaluateParams, FamilySummary, PipelineParams, RegisterParams, TrainResult
from flows.register import register_version


def _first_line(err: BaseException) -> str:
    """``Type: first line of the message``: how a failure reads in a summary and a log line."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


def run_family(family: str, params: PipelineParams, dataset: DatasetRef,
               trained_by: Callable[[], TrainResult]) -> FamilySummary:
    """Train (``trained_by``: here, on a deployment's worker or in a pool's worker), evaluate and register one
    family; an error ends up in the summary rather than raised, so one family's failure stops no other."""
    summary = FamilySummary(family=family)
    try:
        trained = trained_by()
        summary = summary.model_copy(update={"train": trained})
        evaluated = evaluate_logged_model(EvaluateParams(
            model_uri=trained.model_uri, data=params.data, profile=params.evaluation_profile,
            eval_overrides=params.eval_overrides, device=params.plan.device, train_run_id=trained.run_id,
            expected_digest=dataset.digest), dataset.digest, label=family)
        summary = summary.model_copy(update={"evaluation": evaluated})
        # The evaluation run's values are the only test metrics (training reports what training needs).
        metrics = {**dataset.baselines, **evaluated.metrics}
        if model_info(family).generates and not any(k.startswith("reference_") for k in metrics):
            # The gates' yardstick, when data preparation left it to the jobs (disk-cached: computed once).
            metrics.update(reference_metrics(params.data, dataset.digest, params.evaluation(), params.plan.device))
        registered = register_version.with_options(task_run_name=f"register_version-{family}")(RegisterParams(
            run_id=trained.run_id, model_uri=trained.model_uri, family=family, dataset=dataset.name,
            dataset_digest=dataset.digest, metrics=metrics, eval_run_id=evaluated.run_id))
        return summary.model_copy(update={"registration": registered})
    except Exception as err:  # one family's failure must not stop the others
        get_run_logger().error("%s failed: %s", family, _first_line(err))
        return summary.model_copy(update={"error": _first_line(err)})
