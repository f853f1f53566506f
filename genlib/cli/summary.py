"""Text the operations commands print: the pipeline's summary and the registry listing, as tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genlib.tables import format_table, format_value

SUMMARY_COLUMNS = ["family", "version", "aliases", "primary", "sq_err/img", "fid", "class_acc", "gates", "trained"]
REGISTRY_COLUMNS = ["name", "version", "aliases", "primary", "sq_err/img", "fid", "class_acc", "gates", "digest"]


def key_metrics(family: str, metrics: Mapping[str, float]) -> dict[str, Any]:
    """The columns every table shows for a model: its family's primary metric and three shared ones."""
    from genlib.models.catalog import model_info

    info = model_info(family)
    return {"primary": f"{info.primary_metric}={format_value(metrics.get(info.primary_metric))}",
            "sq_err/img": metrics.get("test_sq_err_per_image"), "fid": metrics.get("fid"),
            "class_acc": metrics.get("class_accuracy")}


def pipeline_summary(result: Any, total: float, startup: float, target: Any, prefect_line: str) -> str:
    """The summary ``genlib pipeline`` prints: data set, one row per family, where the time went, dashboards."""
    rows = []
    for s in result.families:
        metrics = {**(s.train.metrics if s.train else {}), **(s.evaluation.metrics if s.evaluation else {})}
        reg = s.registration
        row = {"family": s.family, **key_metrics(s.family, metrics),
               "version": reg.version if reg else None, "aliases": ",".join(reg.aliases) if reg else None,
               "gates": (f"failed: {reg.failed_gate}" if reg.failed_gate else "passed") if reg else None,
               "trained": ("cached" if s.train.cached else f"{s.train.train_seconds:.1f}s") if s.train else None}
        if s.error:
            row["gates"] = f"error: {s.error}"[:70]
        elif s.skipped:
            row.update(primary=None, gates=f"skipped: {s.skipped}"[:70])
        rows.append(row)
    labels = "" if result.dataset.num_classes >= 2 else ", no class labels"
    lines = ["", f"data set {result.dataset.name} (digest {result.dataset.digest[:12]}, "
                 f"train/val/test {'/'.join(str(n) for n in result.dataset.sizes.values())}{labels})",
             format_table(rows, SUMMARY_COLUMNS)]
    if result.report_run_id:
        lines.append(f"evaluation report: MLflow run {result.report_run_id} (print it with `genlib report`)")
        if labels:
            lines.append("  without class labels, the evaluations that need them were skipped: `genlib report`'s "
                         "table skipped says which and why")
    lines.append(time_line(result.seconds, total, startup))
    lines.append("dashboards: `genlib ui` (MLflow and Prefect on 127.0.0.1, URLs printed)")
    lines.append(f"  MLflow: {'embedded store ' if target.local else ''}{target.uri}")
    lines.extend(mlflow_links(target, result.dataset.name, result.dataset.experiment_id))
    lines.append(f"  {prefect_line}")
    return "\n".join(lines)


def mlflow_links(target: Any, dataset: str, experiment_id: str) -> list[str]:
    """The experiment's runs view and the registered models: on the tracking server, or for the embedded
    store where ``genlib ui`` serves it by default."""
    from genlib.tracking.links import GENLIB_UI_PORT, dashboard_lines
    from genlib.tracking.store import experiment_name

    remote = target.uri.startswith(("http://", "https://"))
    base = target.uri if remote else f"http://127.0.0.1:{GENLIB_UI_PORT}"
    lines = dashboard_lines(base, {experiment_name(dataset): experiment_id}, indent="    ")
    if not remote:
        lines.append("    (while `genlib ui` serves the store; it prints these with the port it took)")
    return lines


def registry_table(models: list[dict[str, Any]]) -> str:
    """``genlib registry list``: one row per registered version, newest first within each model."""
    from genlib.tracking.version_notes import gates_label

    rows = []
    for m in models:
        for v in m["versions"]:
            family = m["model"] or ""
            keys = key_metrics(family, v["metrics"]) if family else {}
            rows.append({"name": m["name"], "version": v["version"], "aliases": ",".join(v["aliases"]),
                         **keys, "gates": gates_label(v["gates"]), "digest": (v["dataset_digest"] or "")[:12]})
    return format_table(rows, REGISTRY_COLUMNS)


def time_line(sec: dict[str, float], total: float, startup: float) -> str:
    """Where ``total`` wall seconds went. On a pool of ``sec["workers"]`` job slots (a thread of this process and
    worker processes), compute and logging are seconds summed over the slots, set against what the slots
    had: workers x their wall."""
    compute = sec.get("train", 0.0) + sec.get("evaluate", 0.0) + sec.get("suite", 0.0)
    parts = f"train {sec.get('train', 0):.1f}, evaluate {sec.get('evaluate', 0):.1f}, suite {sec.get('suite', 0):.1f}"
    tracking, other = sec.get("tracking", 0.0), total - startup - sec.get("total", 0.0)
    if "workers" not in sec:
        orchestration = sec.get("total", 0.0) - compute - tracking
        return (f"time {total:.1f}s = compute {compute:.1f}s ({parts}) + MLflow logging {tracking:.1f}s + "
                f"Prefect runs, data checks, model loading {orchestration:.1f}s + start-up {startup:.1f}s "
                f"(imports, tracking store, data, Prefect server) + {other:.1f}s other")
    workers, pool = int(sec["workers"]), sec.get("pool", 0.0)
    capacity = workers * pool
    return (f"time {total:.1f}s = start-up {startup:.1f}s (imports, tracking store, data, Prefect server) + "
            f"{pool:.1f}s on {workers} workers (a thread here, {workers - 1} worker "
            f"process{'es' if workers > 2 else ''}) + "
            f"{sec.get('total', 0.0) - pool:.1f}s in this process (data checks, report, summary) + {other:.1f}s other; "
            f"the workers' {capacity:.1f} seconds = "
            f"compute {compute:.1f} ({parts}) + MLflow logging {tracking:.1f} + Prefect runs, data and model "
            f"loading, worker start-up and idle cores {capacity - compute - tracking:.1f}")
