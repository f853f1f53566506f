"""One gate's outcome (:class:`GateCheck`) and the comparison helpers every gate uses."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class GateCheck:
    """Outcome of one gate: ``gate`` is its stable name, ``metric`` ``op`` ``threshold`` the comparison
    made on ``value`` (None where the metric was missing), ``detail`` the same in words. ``op`` "skip":
    the gate does not apply to this data (it passes, and ``detail`` says why)."""

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


def value(metrics: Mapping[str, Any], key: str) -> float | None:
    """``metrics[key]`` as a float, None when missing or not a number."""
    try:
        out = float(metrics[key])
    except (KeyError, TypeError, ValueError):
        return None
    return out


def fmt(v: float) -> str:
    return f"{v:.4g}"


def compare(gate: str, metric: str, v: float | None, op: str, threshold: float, how: str = "") -> GateCheck:
    """``v op threshold`` as a GateCheck; ``how`` says where the threshold comes from."""
    if v is None:
        return GateCheck(gate, False, f"missing metric {metric}", metric, None, threshold, op)
    ok = math.isfinite(v) and (v <= threshold if op == "<=" else v >= threshold if op == ">=" else v > threshold)
    neg = {"<=": ">", ">=": "<", ">": "<="}[op]
    detail = f"{metric} = {fmt(v)} {op if ok else neg} {how + ' = ' if how else ''}{fmt(threshold)}"
    return GateCheck(gate, ok, detail, metric, v, threshold, op)
