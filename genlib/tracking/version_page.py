"""What a model version's page says: its markdown description (why it is or is not champion, which epoch's
weights it holds, its gates as a table, its headline metrics with a link to the evaluation run that measured
them, and its samples or reconstructions), written by :func:`describe`.

MLflow 3.17's version page renders the description as markdown: tables, links into the UI (its routes are in
the URL fragment) and images served by the same server (``get-artifact?path=...&run_uuid=...``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from genlib.tracking import tags as T
from genlib.tracking.gates import GateCheck, first_failure
from genlib.tracking.version_notes import HEADLINE_METRICS, metrics_from_tags, read_gates

# The source run's pictures a description shows (written by genlib.tracking.callback at the end of training,
# from the weights that were logged), in this order, those present.
VERSION_IMAGES = ("snapshots/samples.png", "snapshots/reconstructions.png")


def _lead(name: str, version: str) -> str:
    return f"First version of {name}" if str(version) == "1" else f"Version {version} of {name}"


def registration_description(name: str, version: str, promoted: bool, reason: str, checks: list[GateCheck],
                             previous_champion: str | None) -> str:
    """The first sentence of a newly registered version's description, e.g. ``First version of
    genlib-gan-mnist, made champion: the first to pass its gates (fid = 22.18).`` or ``Version 3 of
    genlib-vae-mnist, not champion: it failed the reconstruction gate.``"""
    lead = _lead(name, version)
    if promoted:
        if previous_champion:
            return f"{lead}, made champion: {reason}, replacing version {previous_champion}."
        value = reason.removeprefix("no champion yet").strip(" ()")
        return f"{lead}, made champion: no version was champion before it" + (f" ({value})." if value else ".")
    failed = first_failure(list(checks))
    if failed is not None:
        return f"{lead}, not champion: it failed the {failed.gate} gate."
    return f"{lead}, not champion: {reason}."


def dethroned_description(by_version: str, reason: str) -> str:
    """The previous champion's first sentence once ``by_version`` took its place."""
    return f"Champion until version {by_version} replaced it ({reason})."


def promotion_description(alias: str, previous: str | None, checks: list[GateCheck], forced: bool) -> str:
    """First sentence after ``genlib promote`` pointed ``alias`` at the version."""
    was = f" (was version {previous})" if previous else ""
    how = "a forced promotion past a failed gate" if forced else "a manual promotion"
    return f"Made @{alias} by {how}{was}."


def weights_sentence(weights_epoch: int, epochs_run: int, best_epoch: int) -> str:
    """Which epoch's weights a model holds, e.g. ``Weights of epoch 10, the last of 10 epochs (the best
    validation loss was at epoch 8; no early stopping, so the last weights were kept).``"""
    if weights_epoch == epochs_run:
        best = (" (also the best validation loss)" if best_epoch == epochs_run else
                f" (the best validation loss was at epoch {best_epoch}; without early stopping the last weights "
                "are kept)" if best_epoch else "")
        return f"Weights of epoch {weights_epoch}, the last of {epochs_run} epochs{best}."
    return (f"Weights of epoch {weights_epoch}, the best validation loss of {epochs_run} epochs "
            "(restored at the end of training by early stopping).")


def weights_label(weights_epoch: int, epochs_run: int) -> str:
    """Short tag value: ``epoch 10 of 10 (last)`` or ``epoch 8 of 15 (best)``."""
    return f"epoch {weights_epoch} of {epochs_run} ({'last' if weights_epoch == epochs_run else 'best'})"


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def gates_table(report: Mapping[str, Any] | None) -> str:
    """The gate object as a markdown table (gate, check, result); empty without checks."""
    checks = (report or {}).get("checks") or []
    if not checks:
        return ""
    rows = []
    for c in checks:
        threshold = f"{c.get('op', '')} {_fmt(c.get('threshold'))}" if c.get("threshold") is not None else c.get("op", "")
        rows.append(f"| {c.get('gate', '')} | {c.get('metric', '')} | {_fmt(c.get('value'))} | {threshold} | "
                    f"{'passed' if c.get('passed') else '**failed**'} |")
    status = report.get("status", "?") if report else "?"
    return (f"**Gates: {status}**\n\n| gate | metric | value | must be | result |\n|---|---|---|---|---|\n"
            + "\n".join(rows))


def evidence(metrics: Mapping[str, float], eval_run: tuple[str, str] | None) -> str:
    """Markdown for the description: the headline metrics as a table and, with ``eval_run`` (experiment id,
    run id), a link to the evaluation run that measured them. Empty without metrics."""
    rows = [(k, metrics[k]) for k in HEADLINE_METRICS
            if isinstance(metrics.get(k), (int, float)) and math.isfinite(metrics[k])]
    if not rows:
        return ""
    source = f"[evaluation run {eval_run[1][:8]}]({run_link(*eval_run)})" if eval_run else "its evaluation"
    table = "\n".join(f"| {k} | {v:.4g} |" for k, v in rows)
    return f"Measured by {source} on the test split:\n\n| metric | value |\n|---|---|\n{table}"


def run_link(experiment_id: str, run_id: str) -> str:
    """A run's page, as a link the MLflow UI follows from any of its pages (its routes are in the fragment)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def artifact_image(run_id: str, path: str, alt: str) -> str:
    """Markdown showing the image ``path`` of run ``run_id``, served by the MLflow server the page came from
    (a relative URL: it works under any host and path prefix)."""
    return f"![{alt}](get-artifact?{urlencode({'path': path, 'run_uuid': run_id})})"


def version_description(sentence: str, *, weights: str | None = None, gates: Mapping[str, Any] | None = None,
                        metrics: Mapping[str, float] | None = None, eval_run: tuple[str, str] | None = None,
                        images: list[str] = ()) -> str:
    """The whole description: ``sentence``, the weights' epoch, the gates table, the headline metrics with a
    link to the evaluation run, and the images (markdown, see :func:`artifact_image`)."""
    parts = [sentence]
    if weights:
        parts.append(weights)
    for block in (gates_table(gates), evidence(metrics or {}, eval_run)):
        if block:
            parts.append(block)
    parts.extend(images)
    return "\n\n".join(parts)



def describe(client: Any, name: str, version: str, sentence: str) -> None:
    """Set the version's description: ``sentence``, which epoch's weights it holds (from its source run),
    its gates as a table, its headline metrics with a link to the evaluation run (tag ``genlib.eval_run_id``)
    that measured them, and the source run's samples or reconstructions."""
    mv = client.get_model_version(name, version)
    tags = dict(mv.tags or {})
    eval_run = run_ref(client, tags.get(T.EVAL_RUN_ID))
    weights, images = None, []
    if run_ref(client, mv.run_id) is not None:
        epochs = weights_epochs(client.get_run(mv.run_id).data.tags)
        weights = weights_sentence(*epochs) if epochs else None
        try:
            present = {a.path for a in client.list_artifacts(mv.run_id, "snapshots")}
        except Exception:  # noqa: BLE001 - an unreadable artifact store costs the pictures, not the description
            present = set()
        images = [artifact_image(mv.run_id, p, p.rsplit("/", 1)[-1].removesuffix(".png"))
                  for p in VERSION_IMAGES if p in present]
    client.update_model_version(name, version, description=version_description(
        sentence, weights=weights, gates=read_gates(tags), metrics=metrics_from_tags(tags), eval_run=eval_run,
        images=images))


def run_ref(client: Any, run_id: str | None) -> tuple[str, str] | None:
    """(experiment id, run id) of an existing run, else None (deleted since: no link)."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return client.get_run(run_id).info.experiment_id, run_id
    except MlflowException:
        return None


def weights_epochs(run_tags: Mapping[str, str]) -> tuple[int, int, int] | None:
    """(weights epoch, epochs run, best epoch) from a train run's tags; None when it did not record them."""
    try:
        return tuple(int(run_tags[k]) for k in (T.WEIGHTS_EPOCH, T.EPOCHS_RUN, T.BEST_EPOCH))  # type: ignore[return-value]
    except (KeyError, ValueError):
        return None
