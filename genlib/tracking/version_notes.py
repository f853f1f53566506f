"""What a model version says about itself in its tags: a few readable headline tags and one machine-readable
gate tag (its description: :mod:`genlib.tracking.version_page`).

The gate tag ``genlib.gates`` is :func:`genlib.tracking.gates.gate_report`'s
``{"status": "passed" | "failed" | "forced", "checks": [{"metric", "value", "threshold", "op", "passed", ...}]}``
plus ``"metrics"``: the values the family's gates and the champion comparison read (and the headline ones), so
``promote`` re-checks the gates from the registry alone. JSON, non-finite numbers as null.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genlib.tracking import tags as T
from genlib.tracking.gates import GateCheck, check_gates, gate_report

GATES_TAG = T.GATES
# Versions registered before the gate tag held the metrics carried one ``metric.<name>`` tag per metric;
# new versions carry such tags for their headline metrics only (rounded: the exact values are in GATES_TAG).
METRIC_TAG = T.METRIC_PREFIX


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# What a version's description shows under its gates, in this order, when the evaluation measured it (names as
# in docs/metrics.md). MLflow 3.17's version page shows a version's description and tags but not the
# logged model's metrics, so the description carries them.
HEADLINE_METRICS = ("test_loss", "test_sq_err_per_image", "ais_log_likelihood", "test_pseudo_log_likelihood",
                    "fid", "fid_real_floor", "recognised", "precision", "recall", "class_accuracy")


class _Reads(dict):
    """A metrics dict that records which keys were looked up (found or not)."""

    def __init__(self, values: Mapping[str, float]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> float:
        self.read.add(key)
        return super().__getitem__(key)


def gate_evidence(model_name: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics the gates of ``model_name`` read (its primary metric among them) plus the headline
    ones present: what re-checking the gates and comparing with the champion needs, and nothing another
    family's gates use (a GAN version carries no reconstruction baseline)."""
    values = _numeric(metrics)
    reads = _Reads(values)
    check_gates(model_name, reads)  # the gates' own lookups decide what they need
    keep = reads.read | set(HEADLINE_METRICS)
    return {k: v for k, v in values.items() if k in keep}


def gates_tag(checks: list[GateCheck], forced: bool = False, metrics: Mapping[str, float] | None = None) -> str:
    """The ``genlib.gates`` tag value: the gate object, with the gated ``metrics`` when given, as JSON."""
    report = gate_report(list(checks), forced=forced)
    if metrics is not None:
        report["metrics"] = dict(metrics)
    return json.dumps(_finite(report), sort_keys=True)


def read_gates(tags: Mapping[str, str]) -> dict[str, Any] | None:
    """The gate object of a version from its tags; versions registered before gate objects had only
    ``passed`` or ``failed: <gate>`` and get ``{"status": ..., "checks": []}``. None when untagged."""
    text = tags.get(GATES_TAG)
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict) and "status" in value:
        return value
    status = "passed" if text == "passed" else "failed"
    return {"status": status, "checks": [], "legacy": text}


def gates_label(report: Mapping[str, Any] | None) -> str:
    """Short text for tables: ``passed``, ``failed: <first failed gate>`` or ``forced: <first failed gate>``."""
    if not report:
        return "-"
    status = str(report.get("status", "?"))
    if status == "passed":
        return status
    failed = next((c for c in report.get("checks", []) if not c.get("passed")), None)
    name = (failed.get("gate") or failed.get("metric")) if failed else report.get("legacy", "").removeprefix("failed: ")
    return f"{status}: {name}" if name and name != status else status


def metric_tags(metrics: Mapping[str, float], model_name: str | None = None) -> dict[str, str]:
    """A version's tags for ``metrics``. With ``model_name``: ``metric.<name>`` tags, rounded for reading, of
    its headline metrics (the family's primary metric, the squared error of a reconstructing family, the FID
    of a generating one) and the gate tag, whose ``metrics`` hold the gate evidence exactly. Without: one
    exact ``metric.<name>`` tag per metric (the form of versions registered before)."""
    # Timings say nothing about the model.
    values = {k: v for k, v in _numeric(metrics).items() if not k.endswith("_seconds")}
    if model_name is None:  # the form before gate objects held metrics: one exact tag per metric
        return {f"{METRIC_TAG}{k}": repr(v) for k, v in values.items()}
    evidence = gate_evidence(model_name, values)
    checks = check_gates(model_name, evidence)
    tags = {f"{METRIC_TAG}{k}": f"{evidence[k]:.5g}" for k in headline_keys(model_name) if k in evidence}
    return {**tags, GATES_TAG: gates_tag(checks, metrics=evidence)}


def headline_keys(model_name: str) -> list[str]:
    """The metrics a version shows as tags, from its family's capabilities (as ``genlib registry list``)."""
    from genlib.models.catalog import model_info

    info = model_info(model_name)
    keys = [info.primary_metric]
    if info.reconstructs:
        keys.append("test_sq_err_per_image")
    if info.generates:
        keys.append("fid")
    return list(dict.fromkeys(keys))


def metrics_from_tags(tags: Mapping[str, str]) -> dict[str, float]:
    """A version's metrics: ``metric.<name>`` tags, overridden by the exact values of the gate object."""
    out = {}
    for key, value in tags.items():
        if key.startswith(METRIC_TAG):
            try:
                out[key[len(METRIC_TAG):]] = float(value)
            except ValueError:
                continue
    stored = (read_gates(tags) or {}).get("metrics") or {}
    out.update({k: (math.nan if v is None else float(v)) for k, v in stored.items()
                if v is None or isinstance(v, (int, float))})
    return out


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The checked-out commit of the project, or None when git or a repository is not available."""
    folder = Path(cwd) if cwd else Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
