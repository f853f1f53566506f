"""The sample-quality gates, calibrated to the data: each threshold is a fraction of the data set's own reference
row ("real (train vs test)": real train images scored against the test split like a sampler's samples, in the
same feature space, at the same sample size), recorded once per data set as ``reference_*`` metrics
(genlib.evaluation.features.reference_metrics, logged on the data run by ``prepare_data`` and carried by every
evaluation). One rule therefore serves MNIST and any other data set. docs/metrics.md gives each rule and why.

Without a reference (metrics from before references were recorded) the old absolute thresholds apply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from genlib.tracking.gate_checks import GateCheck, compare, fmt, value

# The fractions sit between working and broken samplers of the quick MNIST run (docs/benchmarks.md, "Gates
# calibrated to the data", has the figures they were set from).
# FID <= reference FID + this fraction of the FID scale, tr(Sigma) of the test split's features: the FID of a
# sampler that puts every sample on the real features' mean. The scale is in the feature space's own units, so
# the bound means "well short of a collapse onto the average" in any space.
FID_FRACTION_OF_SCALE = 0.4
# Precision >= this fraction of the reference's. Low, because blur costs precision heavily in a space learned
# from crisp images (a VAE's blurred but recognisable shapes sit well outside the k-NN balls of the sharp real
# ones), while grey images, noise and samplers trained to fail score about 0.
PRECISION_FRACTION = 0.25
# Recall >= this fraction of the reference's: the diversity floor the old gates lacked (one repeated image has
# precision 1 and recall 0). Low, because a likelihood model's blurred samples cover little of the k-NN manifold
# of sharp real images while still drawing every class.
RECALL_FRACTION = 0.1
# The feature classifier recognises at least this fraction of what it recognises among real images.
RECOGNISED_FRACTION = 0.4
# Conditional samplers: class accuracy >= this fraction of the classifier's own test accuracy.
CLASS_ACCURACY_FRACTION = 0.5
# A sampler scoring ABOVE the real images on a recognition measure (recognised, inception score) is suspect:
# classifiers are confident on constant grey images and the inception score rewards one perfect prototype per
# class. Such a sampler must show real coverage: recall >= this fraction of the reference.
RECALL_FRACTION_WHEN_OVERCONFIDENT = 0.25

# Without a reference (absolute, MNIST's numbers).
MIN_RECOGNISED = 0.4
MIN_PRECISION = 0.4
MIN_RECALL = 0.05
MIN_CLASS_ACCURACY = 0.5
FID_FACTOR_OF_FLOOR = 30.0
FID_MARGIN_OVER_FLOOR = 50.0
FID_MAX = 250.0

LABEL_METRICS = ("recognised", "class_accuracy")


def labelled(m: Mapping[str, Any]) -> bool:
    """Whether the data set has labels (``reference_labelled``; taken as yes when not recorded)."""
    flag = value(m, "reference_labelled")
    return flag is None or flag >= 0.5


def _skipped(gate: str, metric: str) -> GateCheck:
    return GateCheck(gate, True, f"skipped: the data set has no labels, so no classifier measures {metric}",
                     metric, None, None, "skip")


def _reference(m: Mapping[str, Any], key: str) -> float | None:
    ref = value(m, f"reference_{key}")
    return ref if ref is not None and math.isfinite(ref) else None


def _relative(gate: str, metric: str, m: Mapping[str, Any], fraction: float, absolute: float) -> GateCheck:
    ref = _reference(m, metric)
    if ref is None:
        return compare(gate, metric, value(m, metric), ">=", absolute)
    return compare(gate, metric, value(m, metric), ">=", fraction * ref, f"{fraction:g} x reference {fmt(ref)}")


def fid_gate(m: Mapping[str, Any]) -> GateCheck:
    ref, scale = _reference(m, "fid"), _reference(m, "fid_scale")
    if ref is not None and scale is not None and scale > 0:
        return compare("fid", "fid", value(m, "fid"), "<=", ref + FID_FRACTION_OF_SCALE * scale,
                       f"reference {fmt(ref)} + {FID_FRACTION_OF_SCALE:g} x scale {fmt(scale)}")
    floor = value(m, "fid_real_floor")
    if floor is not None and math.isfinite(floor) and floor > 0:
        bound = max(FID_FACTOR_OF_FLOOR * floor, floor + FID_MARGIN_OVER_FLOOR)
        return compare("fid", "fid", value(m, "fid"), "<=", bound,
                       f"max({FID_FACTOR_OF_FLOOR:g} x floor {fmt(floor)}, floor + {FID_MARGIN_OVER_FLOOR:g})")
    return compare("fid", "fid", value(m, "fid"), "<=", FID_MAX)


def precision_gate(m: Mapping[str, Any]) -> GateCheck:
    return _relative("precision", "precision", m, PRECISION_FRACTION, MIN_PRECISION)


def recall_gate(m: Mapping[str, Any]) -> GateCheck:
    return _relative("recall", "recall", m, RECALL_FRACTION, MIN_RECALL)


def recognised_gate(m: Mapping[str, Any]) -> GateCheck:
    if not labelled(m):
        return _skipped("recognised", "recognised")
    return _relative("recognised", "recognised", m, RECOGNISED_FRACTION, MIN_RECOGNISED)


def class_accuracy_gate(m: Mapping[str, Any]) -> GateCheck:
    if not labelled(m):
        return _skipped("class_accuracy", "class_accuracy")
    return _relative("class_accuracy", "class_accuracy", m, CLASS_ACCURACY_FRACTION, MIN_CLASS_ACCURACY)


def overconfident_gate(m: Mapping[str, Any]) -> GateCheck:
    """``recognition_without_coverage``: above the real images on a recognition measure while recall collapses."""
    gate = "recognition_without_coverage"
    if not labelled(m):
        return _skipped(gate, "recognised")
    above = []
    for key in ("recognised", "inception_score"):
        v, ref = value(m, key), _reference(m, key)
        if v is not None and ref is not None and v > ref:
            above.append(f"{key} {fmt(v)} > real {fmt(ref)}")
    ref_recall = _reference(m, "recall")
    if not above or ref_recall is None:
        return GateCheck(gate, True, "no recognition measure above the real images'", "recall", value(m, "recall"),
                         None, ">=")
    check = compare(gate, "recall", value(m, "recall"), ">=", RECALL_FRACTION_WHEN_OVERCONFIDENT * ref_recall,
                    f"{RECALL_FRACTION_WHEN_OVERCONFIDENT:g} x reference {fmt(ref_recall)}")
    return GateCheck(gate, check.passed, f"{'; '.join(above)}, so {check.detail}", check.metric, check.value,
                     check.threshold, check.op)
