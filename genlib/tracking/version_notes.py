"""What a model version says about itself: its gate object (tag ``genlib.gates``) and its description,
a sentence or two on why it is, or is not, champion.

The gate object is :func:`genlib.tracking.gates.gate_report`'s
``{"status": "passed" | "failed" | "forced", "checks": [{"metric", "value", "threshold", "op", "passed", ...}]}``,
stored as JSON (non-finite numbers as null, so any JSON reader takes it).
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from genlib.tracking.gates import GateCheck, first_failure, gate_report, gates_sentence

GATES_TAG = "genlib.gates"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def gates_tag(checks: list[GateCheck], forced: bool = False) -> str:
    """The ``genlib.gates`` tag value: the gate object as JSON."""
    return json.dumps(_finite(gate_report(list(checks), forced=forced)), sort_keys=True)


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


def registration_description(version: str, promoted: bool, reason: str, checks: list[GateCheck],
                             previous_champion: str | None) -> str:
    """Why a newly registered version is or is not champion, e.g. ``Champion: test_loss = 200 beats the
    champion's 210 (lower is better), version 2 until now. It passed the gates ...``."""
    gates = gates_sentence(list(checks))
    if promoted:
        was = f", version {previous_champion} until now" if previous_champion else ""
        return f"Champion since its registration: {reason}{was}. {gates}"
    if first_failure(list(checks)) is not None:
        return f"Not champion: it did not pass its gates. {gates}"
    return f"Not champion: {reason}. {gates}"


def dethroned_description(by_version: str, reason: str) -> str:
    """The previous champion's new description once ``by_version`` took its place."""
    return f"Champion until version {by_version} replaced it ({reason})."


def promotion_description(alias: str, previous: str | None, checks: list[GateCheck], forced: bool) -> str:
    """Description after ``genlib promote`` pointed ``alias`` at the version."""
    was = f" (was version {previous})" if previous else ""
    how = "a forced promotion (genlib promote --force) past a failed gate" if forced else "a manual promotion"
    return f"@{alias} by {how}{was}. {gates_sentence(list(checks))}"


# What the version page shows under the sentence, in this order, when the evaluation measured it (names as
# in docs/metrics.md). MLflow 3.17's version page shows a version's description and tags but not the
# logged model's metrics, so the description carries them.
HEADLINE_METRICS = ("test_loss", "test_sq_err_per_image", "ais_log_likelihood", "test_pseudo_log_likelihood",
                    "fid", "fid_real_floor", "recognised", "precision", "recall", "class_accuracy")


def evidence(metrics: Mapping[str, float], eval_run: tuple[str, str] | None) -> str:
    """Markdown for the end of a description: the headline metrics as a table and, with ``eval_run``
    (experiment id, run id), a link to the evaluation run that measured them. Empty without metrics."""
    rows = [(k, metrics[k]) for k in HEADLINE_METRICS
            if isinstance(metrics.get(k), (int, float)) and math.isfinite(metrics[k])]
    if not rows:
        return ""
    source = (f"[evaluation run {eval_run[1][:8]}](#/experiments/{eval_run[0]}/runs/{eval_run[1]})"
              if eval_run else "its evaluation")
    table = "\n".join(f"| {k} | {v:.4g} |" for k, v in rows)
    return f"\n\nMeasured by {source} on the test split:\n\n| metric | value |\n|---|---|\n{table}"


# One tag per key metric (``metric.<name>``), so gates can be re-checked at promotion time.
METRIC_TAG = "metric."


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The checked-out commit of the project, or None when git or a repository is not available."""
    folder = Path(cwd) if cwd else Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def metric_tags(metrics: Mapping[str, float]) -> dict[str, str]:
    # Timings say nothing about the model; everything else numeric is kept as evidence for the gates.
    return {f"{METRIC_TAG}{k}": repr(float(v)) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not k.endswith("_seconds")}


def metrics_from_tags(tags: Mapping[str, str]) -> dict[str, float]:
    out = {}
    for key, value in tags.items():
        if key.startswith(METRIC_TAG):
            try:
                out[key[len(METRIC_TAG):]] = float(value)
            except ValueError:
                continue
    return out
