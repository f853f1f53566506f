"""``evaluate``: run genlib.evaluation on a logged model (loaded by URI) and log the report to an MLflow
evaluation run (metrics, tables, plots) and to Prefect (table and markdown artifacts). Also the suite
evaluation whose tables combine the suite's report with the per-model ones."""

from __future__ import annotations

import re
import time
from typing import Any

from prefect import flow, get_run_logger, task

from flows.common import ConfigAndStore, feature_classifier, load_data, resolve_device, run_or_reuse, track
from flows.params import DataParams, DatasetRef, Device, EvaluateParams, EvaluateResult, RunRef
from flows.prepare_data import check_tracking_store, load_and_validate
from flows.results import RESULTS
from genlib.evaluation.profiles import EvalProfile

# Metrics named in an evaluation run's description (those present).
_HEADLINE = ("test_loss", "test_sq_err_per_image", "fid", "recognised", "class_accuracy", "iwae_nll",
             "ais_log_likelihood")
# The tables of the suite evaluation run (combined from the suite report and the per-model reports).
SUITE_TABLES = ("reconstruction", "pca_vs_ae", "finetune", "augmentation", "generative_quality", "skipped",
                "latent_sampling", "generative_vs_discriminative")


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


@task(cache_policy=ConfigAndStore(ignore=("device",)), persist_result=True, result_serializer=RESULTS)
def evaluate_and_log(model_uri: str, data_params: DataParams, digest: str, evaluation: EvalProfile,
                     train_run_id: str | None, device: str = "auto") -> EvaluateResult:
    """Evaluate the model at ``model_uri`` in a new MLflow run; failures leave that run FAILED."""
    import mlflow

    from genlib.evaluation import evaluate_model
    from genlib.tracking import ensure_experiment, load_genlib_model, resolve_tracking
    from genlib.tracking import tags as T
    from genlib.tracking.runs import link_evaluation, log_dataset_input, log_model_input, log_report
    from genlib.tracking.version_page import run_link

    data = load_data(data_params, expected_digest=digest)
    torch_device = resolve_device(device)
    model = load_genlib_model(model_uri)
    experiment_id = ensure_experiment(data.name, resolve_tracking())
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    tags = {T.MODEL: model.name, T.MODEL_URI: model_uri, T.EVAL_PROFILE: evaluation.name}
    if train_run_id:
        tags[T.TRAIN_RUN_ID] = train_run_id
    with track("evaluation", experiment_id=experiment_id, name=f"eval-{model.name}-{evaluation.name}", dataset=data.name,
               digest=digest, device=str(torch_device), tags=tags) as run_id:
        log_dataset_input(data, context="evaluation", run_id=run_id)
        if model_id:
            log_model_input(run_id, model_id)
        t0 = time.perf_counter()
        # The feature space (the classifier with labels, the contrastive encoder without), kept per process.
        features = feature_classifier(data, evaluation.classifier_epochs, torch_device) if model.generates else None
        report = evaluate_model(model, data, evaluation, device=torch_device, features=features)
        seconds = time.perf_counter() - t0
        tables = log_report(report, run_id, model_id=model_id, data=data)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in report.metrics.items() if k in _HEADLINE)
        trained = f", trained by [training run {train_run_id[:8]}]({run_link(experiment_id, train_run_id)})" \
            if train_run_id else ""
        mlflow.set_tag(T.MLFLOW_RUN_NOTE, f"{model.name} model {model_id or model_uri}{trained}, on {data.name}'s "
                       f"test split with evaluation profile {evaluation.name}: {shown}. These metrics are the "
                       "registered (gated) ones.")
        if train_run_id:
            link_evaluation(train_run_id, model_id, experiment_id, run_id, shown)
        publish_artifacts(report, _artifact_key("eval", model.name, data.name), f"{model.name} on {data.name}")
        tracking = time.perf_counter() - t0 - seconds
    get_run_logger().info("evaluated %s in %.1fs (+%.1fs logging): %s", model.name, seconds, tracking,
                          {k: round(v, 4) for k, v in report.metrics.items()})
    return EvaluateResult(run_id=run_id, model_uri=model_uri, family=model.name,
                          metrics=report.metrics, tables=tables, eval_seconds=seconds, tracking_seconds=tracking)


def evaluate_logged_model(params: EvaluateParams, digest: str, label: str = "") -> EvaluateResult:
    """The evaluate flow's steps on data already validated; the pipeline calls it directly."""
    return run_or_reuse(evaluate_and_log, params.model_uri, params.data, digest, params.evaluation(),
                        params.train_run_id, params.device, label=label)


@flow(name="evaluate", result_serializer=RESULTS)
def evaluate(params: EvaluateParams) -> EvaluateResult:
    """Evaluate the logged model ``params.model_uri`` on ``params.data``; returns the evaluation run id."""
    from genlib.tracking.cleanup import end_runs_on_signal, mark_stale_runs

    check_tracking_store()
    mark_stale_runs()
    end_runs_on_signal()  # SIGTERM/SIGINT end this process's evaluation run KILLED
    summary = load_and_validate(params.data)
    return evaluate_logged_model(params, params.expected_digest or summary["digest"])


@task(cache_policy=ConfigAndStore(ignore=("device",)), persist_result=True, result_serializer=RESULTS,
      task_run_name="suite-{section}")
def section_report(dataset: DatasetRef, evaluation: EvalProfile, section: str, device: str = "auto") -> RunRef:
    """One suite section (genlib.evaluation.suite) in its own ``suite`` run, named ``suite-<section>-<profile>``."""
    from genlib.evaluation.suite import evaluate_section
    from genlib.tracking import tags as T
    from genlib.tracking.runs import log_report

    data = load_data(dataset.params, expected_digest=dataset.digest)
    torch_device = resolve_device(device)
    with track("suite", experiment_id=dataset.experiment_id, name=f"suite-{section}-{evaluation.name}",
               dataset=data.name, digest=dataset.digest, device=str(torch_device),
               tags={T.EVAL_PROFILE: evaluation.name, T.SUITE_SECTION: section}) as run_id:
        t0 = time.perf_counter()
        report = evaluate_section(section, data, evaluation, device=torch_device)
        seconds = time.perf_counter() - t0
        log_report(report, run_id)
    get_run_logger().info("suite section %s in %.1fs", section, seconds)
    return RunRef(run_id=run_id, experiment_id=dataset.experiment_id, seconds=seconds)


def suite_sections(dataset: DatasetRef) -> tuple[list[str], dict[str, str]]:
    """(the suite sections that apply to the prepared data, in start order; {skipped section: why})."""
    from genlib.evaluation.suite import plan_sections

    return plan_sections(load_data(dataset.params, expected_digest=dataset.digest))


@task(cache_policy=ConfigAndStore(), persist_result=True, result_serializer=RESULTS, retries=2, retry_delay_seconds=2)
def combine_evaluations(dataset: DatasetRef, profile: str, section_runs: dict[str, str], model_runs: dict[str, str],
                        skipped: dict[str, str] | None = None) -> RunRef:
    """The evaluation run the reports read: the suite sections' tables combined with each model's
    (``reconstruction`` and ``generative_quality`` gain one row per model); ``skipped`` says which
    sections and parts did not run and why."""
    from genlib.evaluation import EvaluationReport, combine_reports
    from genlib.evaluation.suite import add_skipped
    from genlib.tracking import tags as T
    from genlib.tracking.runs import load_report_tables, log_report

    reports = [EvaluationReport(tables=load_report_tables(run_id)) for _, run_id in sorted(section_runs.items())]
    for family, run_id in sorted(model_runs.items()):
        reports.append(EvaluationReport(tables=load_report_tables(run_id), name=family))
    from genlib.evaluation.field_checks import field_checks

    combined = combine_reports(reports)
    combined.tables = {k: v for k, v in combined.tables.items() if k in SUITE_TABLES}
    # What the field knows, read off these tables, first in the report (genlib report shows it).
    combined.tables = {"field_checks": field_checks(combined.tables), **combined.tables}
    if skipped:
        add_skipped(combined.tables, skipped)
    tags = {T.EVAL_PROFILE: profile, T.SUITE_RUN_ID: ",".join(run for _, run in sorted(section_runs.items())),
            T.MODELS: ",".join(sorted(model_runs)),
            **{f"{T.SUITE_RUN_PREFIX}{section}": run_id for section, run_id in section_runs.items()},
            **{f"{T.EVAL_RUN_PREFIX}{family}": run_id for family, run_id in model_runs.items()}}
    with track("report", experiment_id=dataset.experiment_id, name=f"report-{profile}", dataset=dataset.name,
               digest=dataset.digest, tags=tags) as report_run_id:
        log_report(combined, report_run_id)
    publish_artifacts(combined, _artifact_key("report", dataset.name), f"Evaluation of {dataset.name} ({profile})",
                      ("field_checks", *SUITE_TABLES))
    return RunRef(run_id=report_run_id, experiment_id=dataset.experiment_id)


@flow(name="evaluate_suite", result_serializer=RESULTS)
def evaluate_suite_flow(dataset: DatasetRef, evaluation: EvalProfile, device: Device = "auto",
                        model_runs: dict[str, str] | None = None,
                        sections: dict[str, RunRef] | None = None) -> RunRef:
    """The suite's sections plus the combined tables: the report run, with the seconds spent computing the
    sections (those taken from the cache count 0). ``sections``: the runs workers already made."""
    check_tracking_store()
    names, skipped = suite_sections(dataset)
    done = dict(sections or {})
    for name in names:
        if name not in done:
            done[name] = run_or_reuse(section_report, dataset, evaluation, name, device)
    report = run_or_reuse(combine_evaluations, dataset, evaluation.name, {k: r.run_id for k, r in done.items()},
                          model_runs or {}, skipped)
    return report.model_copy(update={"seconds": sum(0.0 if r.cached else r.seconds for r in done.values())})
