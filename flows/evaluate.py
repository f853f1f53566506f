"""``evaluate``: run genlib.evaluation on a logged model (loaded by URI) and log the report to an MLflow
evaluation run (metrics, tables, plots) and to Prefect (table and markdown artifacts). Also the suite
evaluation whose five tables combine the suite's report with the per-model ones."""

from __future__ import annotations

import re
import time
from typing import Any

from prefect import flow, get_run_logger, task

from flows.common import ConfigAndStore, feature_classifier, load_data, resolve_device, run_is_usable
from flows.params import DataParams, DatasetRef, EvaluateParams, EvaluateResult
from flows.prepare_data import check_tracking_store, load_and_validate

# The tables of the suite evaluation run (combined from the suite report and the per-model reports).
SUITE_TABLES = ("reconstruction", "pca_vs_ae", "finetune", "augmentation", "generative_quality")


def _profile(name: str, overrides: dict[str, Any]) -> Any:
    from genlib.evaluation import get_eval_profile

    return get_eval_profile(name, **overrides)


def _artifact_key(*parts: str) -> str:
    # Prefect artifact keys: lowercase letters, digits and dashes only.
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def publish_artifacts(report: Any, key: str, title: str, tables: tuple[str, ...] | None = None) -> None:
    """The report as Prefect artifacts: one markdown document and one table artifact per table."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_markdown_artifact(markdown=report.markdown(title=title), key=key, description=title)
    for name, df in report.tables.items():
        if tables is None or name in tables:
            rows = df.astype(object).where(df.notna(), None).to_dict(orient="records")
            create_table_artifact(table=rows, key=_artifact_key(key, name), description=f"{title}: {name}")


@task(cache_policy=ConfigAndStore(ignore=("device",)), persist_result=True)
def evaluate_and_log(model_uri: str, data_params: DataParams, digest: str, profile: str,
                     eval_overrides: dict[str, Any], train_run_id: str | None, device: str = "auto") -> EvaluateResult:
    """Evaluate the model at ``model_uri`` in a new MLflow run; failures leave that run FAILED."""
    import mlflow

    from genlib.evaluation import evaluate_model
    from genlib.tracking import ensure_experiment, load_genlib_model, resolve_tracking
    from genlib.tracking.runs import KIND_TAG, log_dataset_input, log_report

    data = load_data(data_params, expected_digest=digest)
    torch_device = resolve_device(device)
    model = load_genlib_model(model_uri)
    experiment_id = ensure_experiment(data.name, resolve_tracking())
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    tags = {KIND_TAG: "evaluation", "genlib.model": model.name, "genlib.model_uri": model_uri,
            "genlib.eval_profile": profile, "genlib.dataset": data.name, "genlib.dataset_digest": digest}
    if train_run_id:
        tags["genlib.train_run_id"] = train_run_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"eval-{model.name}-{profile}", tags=tags) as run:
        log_dataset_input(data, context="evaluation", run_id=run.info.run_id)
        t0 = time.perf_counter()
        eval_profile = _profile(profile, eval_overrides)
        features = feature_classifier(data, eval_profile.classifier_epochs, torch_device) if model.generates else None
        report = evaluate_model(model, data, eval_profile, device=torch_device, features=features)
        seconds = time.perf_counter() - t0
        tables = log_report(report, run.info.run_id, model_id=model_id)
        publish_artifacts(report, _artifact_key("eval", model.name, data.name), f"{model.name} on {data.name}")
        tracking = time.perf_counter() - t0 - seconds
    get_run_logger().info("evaluated %s in %.1fs (+%.1fs logging): %s", model.name, seconds, tracking,
                          {k: round(v, 4) for k, v in report.metrics.items()})
    return EvaluateResult(run_id=run.info.run_id, model_uri=model_uri, family=model.name,
                          metrics=report.metrics, tables=tables, eval_seconds=seconds, tracking_seconds=tracking)


def evaluate_logged_model(params: EvaluateParams, digest: str, label: str = "") -> EvaluateResult:
    """The evaluate flow's steps on data already validated; the pipeline calls it directly. A cached
    result whose run is gone is computed again."""
    args = (params.model_uri, params.data, digest, params.profile, params.eval_overrides, params.train_run_id,
            params.device)
    task_ = evaluate_and_log.with_options(task_run_name=f"evaluate_and_log-{label}" if label else None)
    state = task_(*args, return_state=True)
    result, cached = state.result(), state.name == "Cached"
    if cached and not run_is_usable(result.run_id, needs_model=False):
        result, cached = task_.with_options(refresh_cache=True)(*args), False
    return result.model_copy(update={"cached": cached})


@flow(name="evaluate")
def evaluate(params: EvaluateParams) -> EvaluateResult:
    """Evaluate the logged model ``params.model_uri`` on ``params.data``; returns the evaluation run id."""
    check_tracking_store()
    summary = load_and_validate(params.data)
    return evaluate_logged_model(params, params.expected_digest or summary["digest"])


@task(cache_policy=ConfigAndStore(ignore=("device",)), persist_result=True)
def suite_report(dataset: DatasetRef, profile: str, eval_overrides: dict[str, Any],
                 device: str = "auto") -> tuple[str, float]:
    """The suite's own experiments (PCA vs AE, fine-tuning, augmentation) in a ``suite`` run.
    Returns (run id, seconds)."""
    import mlflow

    from genlib.evaluation import evaluate_suite
    from genlib.tracking.runs import KIND_TAG, log_report

    data = load_data(dataset.params, expected_digest=dataset.digest)
    tags = {KIND_TAG: "suite", "genlib.eval_profile": profile, "genlib.dataset": data.name,
            "genlib.dataset_digest": dataset.digest}
    with mlflow.start_run(experiment_id=dataset.experiment_id, run_name=f"suite-{profile}", tags=tags) as run:
        t0 = time.perf_counter()
        report = evaluate_suite(data, _profile(profile, eval_overrides), device=resolve_device(device))
        seconds = time.perf_counter() - t0
        log_report(report, run.info.run_id)
    get_run_logger().info("suite evaluation in %.1fs", seconds)
    return run.info.run_id, seconds


@task(cache_policy=ConfigAndStore(), persist_result=True, retries=2, retry_delay_seconds=2)
def combine_evaluations(dataset: DatasetRef, profile: str, suite_run_id: str,
                        model_runs: dict[str, str]) -> str:
    """The evaluation run the reports read: the suite's tables combined with each model's
    (``reconstruction`` and ``generative_quality`` gain one row per model). Returns its run id."""
    import mlflow

    from genlib.evaluation import EvaluationReport, combine_reports
    from genlib.tracking.runs import KIND_TAG, load_report_tables, log_report

    reports = [EvaluationReport(tables=load_report_tables(suite_run_id))]
    for family, run_id in sorted(model_runs.items()):
        reports.append(EvaluationReport(tables=load_report_tables(run_id), name=family))
    combined = combine_reports(reports)
    combined.tables = {k: v for k, v in combined.tables.items() if k in SUITE_TABLES}
    tags = {KIND_TAG: "report", "genlib.eval_profile": profile, "genlib.dataset": dataset.name,
            "genlib.dataset_digest": dataset.digest, "genlib.suite_run_id": suite_run_id,
            "genlib.models": ",".join(sorted(model_runs))}
    with mlflow.start_run(experiment_id=dataset.experiment_id, run_name=f"report-{profile}", tags=tags) as run:
        log_report(combined, run.info.run_id)
        for family, run_id in model_runs.items():
            mlflow.set_tag(f"genlib.eval_run.{family}", run_id)
    publish_artifacts(combined, _artifact_key("report", dataset.name), f"Evaluation of {dataset.name} ({profile})",
                      SUITE_TABLES)
    return run.info.run_id


@flow(name="evaluate_suite")
def evaluate_suite_flow(dataset: DatasetRef, profile: str = "quick", eval_overrides: dict[str, Any] | None = None,
                        device: str = "auto", model_runs: dict[str, str] | None = None) -> tuple[str, float]:
    """Suite-level evaluation plus the combined five tables.

    Returns (report run id, seconds spent computing the suite here: 0 when it came from the cache).
    """
    check_tracking_store()
    args = (dataset, profile, eval_overrides or {}, device)
    state = suite_report(*args, return_state=True)
    (suite_run_id, seconds), cached = state.result(), state.name == "Cached"
    if cached and not run_is_usable(suite_run_id, needs_model=False):
        (suite_run_id, seconds), cached = suite_report.with_options(refresh_cache=True)(*args), False
    report_run_id = combine_evaluations(dataset, profile, suite_run_id, model_runs or {})
    return report_run_id, 0.0 if cached else seconds
