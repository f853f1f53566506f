"""Metric gates a model version must pass before it may become ``champion``, and the champion comparison.

Gates read stable metric names only (``docs/metrics.md``): the training run's test metrics
(``test_loss``, ``test_sq_err_per_image``, ``test_pseudo_log_likelihood``), the evaluation's
(``fid``, ``class_accuracy``, ...) and data baselines recorded next to them (``baseline_*``,
see :func:`data_baselines`). Which gates apply follows the model class's capabilities, not its name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

# A reconstructing model must beat "predict the mean training image" by this factor.
RECON_FRACTION_OF_MEAN_IMAGE = 0.75
# Without a recorded baseline: mean squared error per pixel on the [0, 1] scale.
RECON_MAX_MSE = 0.05
# The gates are the floor a champion must clear, set between working and broken models; the field's
# targets (70% of samples recognised, precision 0.5) are checked apart, by genlib report's field checks
# (genlib.evaluation.field_checks), where a miss is shown rather than hidden.
# FID must stay below max(factor x floor, floor + margin), the floor being the FID between two samples
# of real images at the same sample size. The factor bounds small-sample runs (quick on 10k MNIST: floor
# ~6, where working DCGANs score 50-120 and broken models several hundred: 600-800 for grey blots);
# the margin bounds large-sample runs, whose floor tends to zero while good models keep an FID of tens.
FID_FACTOR_OF_FLOOR = 30.0
FID_MARGIN_OVER_FLOOR = 50.0
# Without a recorded floor.
FID_MAX = 250.0
# Samples a person would call digits: at least this share is ``recognised`` by the feature classifier
# (top class with probability >= 0.9, see genlib.evaluation.generative), and precision (share of samples
# inside the real images' k-NN manifold) at least this. Grey blots score about 0 on both; the quick
# run's working generators 0.5-0.9.
MIN_RECOGNISED = 0.4
MIN_PRECISION = 0.4
# Conditional generators: the feature classifier must recognise the asked-for class this often (chance = 1/C).
MIN_CLASS_ACCURACY = 0.5


@dataclasses.dataclass(frozen=True)
class GateCheck:
    """Outcome of one gate: ``gate`` is its stable name, ``metric`` ``op`` ``threshold`` the comparison
    made on ``value`` (None where the metric was missing), ``detail`` the same in words."""

    gate: str
    passed: bool
    detail: str
    metric: str = ""
    value: float | None = None
    threshold: float | None = None
    op: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"gate": self.gate, "metric": self.metric, "value": self.value, "threshold": self.threshold,
                "op": self.op, "passed": self.passed, "detail": self.detail}


GateResult = GateCheck  # the name before gate checks carried their numbers


@dataclasses.dataclass(frozen=True)
class Gate:
    name: str
    description: str
    check: Callable[[Mapping[str, float]], GateCheck]


def _value(metrics: Mapping[str, Any], key: str) -> float | None:
    try:
        value = float(metrics[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _compare(gate: str, metric: str, value: float | None, op: str, threshold: float, how: str = "") -> GateCheck:
    """``value op threshold`` as a GateCheck; ``how`` says where the threshold comes from."""
    if value is None:
        return GateCheck(gate, False, f"missing metric {metric}", metric, None, threshold, op)
    ok = math.isfinite(value) and (value <= threshold if op == "<=" else value >= threshold if op == ">=" else
                                   value > threshold)
    neg = {"<=": ">", ">=": "<", ">": "<="}[op]
    detail = f"{metric} = {_fmt(value)} {op if ok else neg} {how + ' = ' if how else ''}{_fmt(threshold)}"
    return GateCheck(gate, ok, detail, metric, value, threshold, op)


def _finite_gate(keys: list[str]) -> Gate:
    def check(m: Mapping[str, float]) -> GateCheck:
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


def _fid_gate(m: Mapping[str, float]) -> GateCheck:
    floor = _value(m, "fid_real_floor")
    if floor is not None and math.isfinite(floor) and floor > 0:
        bound = max(FID_FACTOR_OF_FLOOR * floor, floor + FID_MARGIN_OVER_FLOOR)
        return _compare("fid", "fid", _value(m, "fid"), "<=", bound,
                        f"max({FID_FACTOR_OF_FLOOR:g} x floor {_fmt(floor)}, floor + {FID_MARGIN_OVER_FLOOR:g})")
    return _compare("fid", "fid", _value(m, "fid"), "<=", FID_MAX)


def _recognised_gate(m: Mapping[str, float]) -> GateCheck:
    return _compare("recognised", "recognised", _value(m, "recognised"), ">=", MIN_RECOGNISED)


def _precision_gate(m: Mapping[str, float]) -> GateCheck:
    return _compare("precision", "precision", _value(m, "precision"), ">=", MIN_PRECISION)


def _class_accuracy_gate(m: Mapping[str, float]) -> GateCheck:
    return _compare("class_accuracy", "class_accuracy", _value(m, "class_accuracy"), ">=", MIN_CLASS_ACCURACY)


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

    Every family that samples is gated on what a person sees in its samples (the feature classifier
    recognises them; precision), and models without a likelihood (GANs) also on the Frechet distance
    relative to the real floor: for them it is the only global measure, while for likelihood models
    it mostly measures blur, which their likelihood gate already judges.
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
        keys += ["recognised", "precision"]
        gates.append(Gate("recognised", "the feature classifier recognises the samples", _recognised_gate))
        gates.append(Gate("precision", "samples lie on the real-data manifold", _precision_gate))
        if cls.likelihood is None:
            keys.append("fid")
            gates.append(Gate("fid", "FID within a bound relative to the real-data floor", _fid_gate))
        if cls.conditional:
            keys.append("class_accuracy")
            gates.append(Gate("class_accuracy", "samples recognised as their class", _class_accuracy_gate))
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
