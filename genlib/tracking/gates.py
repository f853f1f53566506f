"""Metric gates a model version must pass before it may become ``champion``, and the champion comparison.

Gates read stable metric names only (``docs/metrics.md``): the training run's test metrics
(``test_loss``, ``test_sq_err_per_image``, ``test_pseudo_log_likelihood``), the evaluation's
(``fid``, ``class_accuracy``, ...), data baselines recorded next to them (``baseline_*``, see
:func:`data_baselines`) and the data set's reference row (``reference_*``, the sample-quality gates'
yardstick: :mod:`genlib.tracking.quality_gates`). Which gates apply follows the model class's capabilities,
not its name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from genlib.tracking import quality_gates as Q
from genlib.tracking.gate_checks import GateCheck, compare as _compare, fmt as _fmt, value as _value

# A reconstructing model must beat "predict the mean training image" by this factor.
RECON_FRACTION_OF_MEAN_IMAGE = 0.75
# Without a recorded baseline: mean squared error per pixel on the [0, 1] scale.
RECON_MAX_MSE = 0.05
# The sample-quality thresholds are fractions of the data set's reference row: genlib.tracking.quality_gates.
# The gates are the floor a champion must clear, set between working and broken models; the field's targets
# (70% of samples recognised, precision 0.5) are checked apart, by genlib report's field checks
# (genlib.evaluation.field_checks), where a miss is shown rather than hidden.

GateResult = GateCheck  # the name before gate checks carried their numbers
__all__ = ["Gate", "GateCheck", "GateResult", "beats", "check_gates", "data_baselines", "first_failure",
           "gate_report", "gates_for", "gates_sentence"]


@dataclasses.dataclass(frozen=True)
class Gate:
    name: str
    description: str
    check: Callable[[Mapping[str, float]], GateCheck]


def _finite_gate(all_keys: list[str]) -> Gate:
    def check(m: Mapping[str, float]) -> GateCheck:
        # Without labels there is no classifier to measure the label metrics: their gates say "skipped".
        keys = all_keys if Q.labelled(m) else [k for k in all_keys if k not in Q.LABEL_METRICS]
        missing = [k for k in keys if _value(m, k) is None]
        if missing:
            return GateCheck("finite", False, f"missing metric {missing[0]}", missing[0], None, None, "finite")
        bad = [k for k in keys if not math.isfinite(_value(m, k))]  # type: ignore[arg-type]
        if bad:
            return GateCheck("finite", False, f"{bad[0]} = {m[bad[0]]} is not finite", bad[0], None, None, "finite")
        return GateCheck("finite", True, f"{', '.join(keys)} finite", ", ".join(keys), None, None, "finite")

    return Gate("finite", "the primary metric and every gated metric are present and finite", check)


def _reconstruction_gate(m: Mapping[str, float]) -> GateCheck:
    err, base = _value(m, "test_sq_err_per_image"), _value(m, "baseline_sq_err_per_image")
    if base is not None and math.isfinite(base):
        return _compare("reconstruction", "test_sq_err_per_image", err, "<=", RECON_FRACTION_OF_MEAN_IMAGE * base,
                        f"{RECON_FRACTION_OF_MEAN_IMAGE} x mean-image baseline {_fmt(base)}")
    return _compare("reconstruction", "test_mse", _value(m, "test_mse"), "<=", RECON_MAX_MSE)


def _likelihood_gate(m: Mapping[str, float]) -> GateCheck:
    key = "ais_log_likelihood" if _value(m, "ais_log_likelihood") is not None else "test_pseudo_log_likelihood"
    ll, base = _value(m, key), _value(m, "baseline_bernoulli_log_likelihood")
    if ll is None:
        return GateCheck("likelihood", False, "missing metric ais_log_likelihood", "ais_log_likelihood", None, None, ">")
    if base is None or not math.isfinite(base):
        return GateCheck("likelihood", math.isfinite(ll), f"{key} = {_fmt(ll)} (no baseline recorded)", key, ll,
                         None, ">")
    return _compare("likelihood", key, ll, ">", base, "independent-pixel baseline")


def gates_for(model_name: str) -> list[Gate]:
    """The gates of registered model ``model_name``, from its class's capabilities, in the order checked.

    Every family that samples has the same sample-quality gates, each relative to the data's reference row
    (genlib.tracking.quality_gates): a recognition measure above the real images' only with coverage, the
    share recognised (label-free data: skipped), precision, recall and the Frechet distance.
    """
    from genlib.models.catalog import model_info  # capabilities without importing torch

    cls = model_info(model_name)
    keys = [cls.primary_metric]
    gates: list[Gate] = []
    if cls.reconstructs:
        keys.append("test_sq_err_per_image")
        gates.append(Gate("reconstruction", "reconstruction error well below the mean-image baseline",
                          _reconstruction_gate))
    if cls.generates:
        # Every sampling family has the same gate set, likelihood or not: a likelihood says nothing about
        # whether the samples cover the data (an rbm whose chains fall into one digit keeps a fair likelihood).
        keys += ["recognised", "precision", "recall", "fid"]
        gates += [
            Gate("recognition_without_coverage", "a recognition measure above the real images' while recall "
                 "collapses", Q.overconfident_gate),
            Gate("recognised", "the feature classifier recognises the samples", Q.recognised_gate),
            Gate("precision", "samples lie on the real-data manifold", Q.precision_gate),
            Gate("recall", "the samples cover the real data", Q.recall_gate),
            Gate("fid", "FID within a bound relative to the data's reference", Q.fid_gate),
        ]
        if cls.conditional:
            keys.append("class_accuracy")
            gates.append(Gate("class_accuracy", "samples recognised as their class", Q.class_accuracy_gate))
    if cls.likelihood == "energy":
        keys.append("ais_log_likelihood")
        gates.append(Gate("likelihood", "test log-likelihood above independent pixels", _likelihood_gate))
    return [_finite_gate(list(dict.fromkeys(keys))), *gates]


def check_gates(model_name: str, metrics: Mapping[str, float]) -> list[GateCheck]:
    """Every gate's result for ``metrics`` (all gates are evaluated, so reports show each one)."""
    return [gate.check(metrics) for gate in gates_for(model_name)]


def gate_report(checks: list[GateCheck], forced: bool = False) -> dict[str, Any]:
    """The gates as stored on a model version: ``{"status": "passed" | "failed" | "forced", "checks": [...]}``.

    ``forced``: the version was promoted with ``--force`` despite a failed gate (status ``forced``;
    the checks still say which failed).
    """
    failed = first_failure(checks) is not None
    status = "forced" if forced and failed else "failed" if failed else "passed"
    return {"status": status, "checks": [c.as_json() for c in checks]}


def gates_sentence(checks: list[GateCheck]) -> str:
    """One sentence naming the gates passed, or the first that failed with its numbers."""
    failed = first_failure(checks)
    if failed is not None:
        return f"It failed the {failed.gate} gate ({failed.detail})."
    return "It passed the gates " + "; ".join(c.detail for c in checks if c.gate != "finite") + "."


def first_failure(results: list[GateCheck]) -> GateCheck | None:
    return next((r for r in results if not r.passed), None)


def beats(model_name: str, candidate: Mapping[str, float], champion: Mapping[str, float] | None) -> tuple[bool, str]:
    """Whether ``candidate`` is strictly better than ``champion`` on the family's primary metric."""
    from genlib.models.catalog import model_info

    cls = model_info(model_name)
    key, lower = cls.primary_metric, cls.primary_metric_lower_is_better
    new = _value(candidate, key)
    if new is None or not math.isfinite(new):
        return False, f"candidate has no finite {key}"
    if champion is None:
        return True, f"no champion yet ({key} = {_fmt(new)})"
    old = _value(champion, key)
    if old is None or not math.isfinite(old):
        return True, f"champion has no finite {key}; candidate {key} = {_fmt(new)}"
    better = new < old if lower else new > old
    word = "lower" if lower else "higher"
    verdict = "beats" if better else "does not beat"
    return better, f"{key} = {_fmt(new)} {verdict} champion's {_fmt(old)} ({word} is better)"


def data_baselines(data: Any) -> dict[str, float]:
    """Reference values the gates compare against, from a DataSplits.

    ``baseline_sq_err_per_image``: squared error per test image (summed over pixels) of predicting
    the mean training image for every image; any useful autoencoder must beat it clearly.
    ``baseline_bernoulli_log_likelihood``: expected log-likelihood (nats per image) of stochastic
    binarisations of the test images (how RBMs are scored) under independent pixels with the train
    marginals (clipped to [1e-3, 1 - 1e-3]), the base-rate model of Salakhutdinov & Murray (2008);
    an RBM must beat it. The expectation is exact: E[v] = x for v ~ Bernoulli(x).
    """
    import torch

    with torch.no_grad():
        mean = data.x_train.float().mean(0, keepdim=True)
        err = (data.x_test.float() - mean).pow(2).flatten(1).sum(1).mean()
        p = data.x_train.float().flatten(1).mean(0).clamp(1e-3, 1 - 1e-3)
        v = data.x_test.float().flatten(1)
        ll = (v * p.log() + (1 - v) * (1 - p).log()).sum(1).mean()
    return {"baseline_sq_err_per_image": float(err), "baseline_bernoulli_log_likelihood": float(ll)}
