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
# FID must stay below max(factor x floor, floor + margin), the floor being the FID between two samples
# of real images at the same sample size. The factor bounds small-sample runs (quick: floor ~9, where
# working models score 25-100 and broken ones several hundred); the margin bounds large-sample runs,
# whose floor tends to zero while good models keep an FID of tens.
FID_FACTOR_OF_FLOOR = 20.0
FID_MARGIN_OVER_FLOOR = 50.0
# Without a recorded floor.
FID_MAX = 250.0
# Families whose samples are gated on FID. An RBM trained by contrastive divergence is judged by its
# likelihood instead: its Gibbs chains mix slowly, so short-run samples say little about the model.
SAMPLE_QUALITY_FAMILIES = ("vae", "gan")
# Conditional generators: the feature classifier must recognise the asked-for class this often (chance = 1/C).
MIN_CLASS_ACCURACY = 0.5


@dataclasses.dataclass(frozen=True)
class GateResult:
    """Outcome of one gate: ``gate`` is its stable name, ``detail`` says the numbers compared."""

    gate: str
    passed: bool
    detail: str


@dataclasses.dataclass(frozen=True)
class Gate:
    name: str
    description: str
    check: Callable[[Mapping[str, float]], GateResult]


def _value(metrics: Mapping[str, Any], key: str) -> float | None:
    try:
        value = float(metrics[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _finite_gate(keys: list[str]) -> Gate:
    def check(m: Mapping[str, float]) -> GateResult:
        missing = [k for k in keys if _value(m, k) is None]
        if missing:
            return GateResult("finite", False, f"missing metric {missing[0]}")
        bad = [k for k in keys if not math.isfinite(_value(m, k))]  # type: ignore[arg-type]
        if bad:
            return GateResult("finite", False, f"{bad[0]} = {m[bad[0]]} is not finite")
        return GateResult("finite", True, f"{', '.join(keys)} finite")

    return Gate("finite", "the primary metric and every gated metric are present and finite", check)


def _reconstruction_gate(m: Mapping[str, float]) -> GateResult:
    err, base, mse = _value(m, "test_sq_err_per_image"), _value(m, "baseline_sq_err_per_image"), _value(m, "test_mse")
    if err is None and mse is None:
        return GateResult("reconstruction", False, "missing metric test_sq_err_per_image")
    if base is not None and err is not None and math.isfinite(base):
        bound = RECON_FRACTION_OF_MEAN_IMAGE * base
        ok = err <= bound
        return GateResult("reconstruction", ok, f"test_sq_err_per_image = {_fmt(err)} {'<=' if ok else '>'} "
                          f"{RECON_FRACTION_OF_MEAN_IMAGE} x mean-image baseline {_fmt(base)} = {_fmt(bound)}")
    if mse is None:
        return GateResult("reconstruction", False, "missing metric test_mse")
    ok = mse <= RECON_MAX_MSE
    return GateResult("reconstruction", ok, f"test_mse = {_fmt(mse)} {'<=' if ok else '>'} {RECON_MAX_MSE}")


def _fid_gate(m: Mapping[str, float]) -> GateResult:
    fid, floor = _value(m, "fid"), _value(m, "fid_real_floor")
    if fid is None:
        return GateResult("fid", False, "missing metric fid")
    if floor is not None and math.isfinite(floor) and floor > 0:
        bound = max(FID_FACTOR_OF_FLOOR * floor, floor + FID_MARGIN_OVER_FLOOR)
        ok = fid <= bound
        return GateResult("fid", ok, f"fid = {_fmt(fid)} {'<=' if ok else '>'} max({FID_FACTOR_OF_FLOOR:g} x floor "
                          f"{_fmt(floor)}, floor + {FID_MARGIN_OVER_FLOOR:g}) = {_fmt(bound)}")
    ok = fid <= FID_MAX
    return GateResult("fid", ok, f"fid = {_fmt(fid)} {'<=' if ok else '>'} {FID_MAX}")


def _class_accuracy_gate(m: Mapping[str, float]) -> GateResult:
    acc = _value(m, "class_accuracy")
    if acc is None:
        return GateResult("class_accuracy", False, "missing metric class_accuracy")
    ok = acc >= MIN_CLASS_ACCURACY
    return GateResult("class_accuracy", ok, f"class_accuracy = {_fmt(acc)} {'>=' if ok else '<'} {MIN_CLASS_ACCURACY}")


def _likelihood_gate(m: Mapping[str, float]) -> GateResult:
    key = "ais_log_likelihood" if _value(m, "ais_log_likelihood") is not None else "pseudo_log_likelihood"
    ll, base = _value(m, key), _value(m, "baseline_bernoulli_log_likelihood")
    if ll is None:
        return GateResult("likelihood", False, "missing metric ais_log_likelihood")
    if base is None or not math.isfinite(base):
        return GateResult("likelihood", math.isfinite(ll), f"{key} = {_fmt(ll)} (no baseline recorded)")
    ok = ll > base
    return GateResult("likelihood", ok, f"{key} = {_fmt(ll)} {'>' if ok else '<='} independent-pixel "
                      f"baseline {_fmt(base)}")


def gates_for(model_name: str) -> list[Gate]:
    """The gates of registered model ``model_name``, from its class's capabilities, in the order checked."""
    from genlib.models import get_model_class

    cls = get_model_class(model_name)
    keys = [cls.primary_metric]
    gates: list[Gate] = []
    if cls.reconstructs:
        keys.append("test_sq_err_per_image")
        gates.append(Gate("reconstruction", "reconstruction error well below the mean-image baseline",
                          _reconstruction_gate))
    if cls.generates and cls.family in SAMPLE_QUALITY_FAMILIES:
        keys.append("fid")
        gates.append(Gate("fid", "FID within a bound relative to the real-data floor", _fid_gate))
        if cls.conditional:
            keys.append("class_accuracy")
            gates.append(Gate("class_accuracy", "samples recognised as their class", _class_accuracy_gate))
    if cls.family == "rbm":
        keys.append("ais_log_likelihood")
        gates.append(Gate("likelihood", "test log-likelihood above independent pixels", _likelihood_gate))
    return [_finite_gate(list(dict.fromkeys(keys))), *gates]


def check_gates(model_name: str, metrics: Mapping[str, float]) -> list[GateResult]:
    """Every gate's result for ``metrics`` (all gates are evaluated, so reports show each one)."""
    return [gate.check(metrics) for gate in gates_for(model_name)]


def first_failure(results: list[GateResult]) -> GateResult | None:
    return next((r for r in results if not r.passed), None)


def beats(model_name: str, candidate: Mapping[str, float], champion: Mapping[str, float] | None) -> tuple[bool, str]:
    """Whether ``candidate`` is strictly better than ``champion`` on the family's primary metric."""
    from genlib.models import get_model_class

    cls = get_model_class(model_name)
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
