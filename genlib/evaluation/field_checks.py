"""What the field knows, checked on a run's tables: an autoencoder beats PCA, pretraining helps with
few labels, generated data can help a classifier, and every sampler's samples look like digits.

Each check reads the tables ``evaluate_model`` / ``evaluate_suite`` produce (docs/metrics.md) and says
what it expected, what it saw and whether it held, so ``genlib report`` can show it beside the tables.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from genlib.evaluation._utils import REAL_FLOOR_NAME

# The label budget at which the few-label checks are read (Kingma et al. 2014's smallest).
FEW_LABELS = 100
MIN_RECOGNISED = 0.7
MIN_PRECISION = 0.5


def _row(check: str, expected: str, observed: str, passed: bool | None) -> dict[str, Any]:
    return {"check": check, "expected": expected, "observed": observed,
            "passed": "n/a" if passed is None else ("yes" if passed else "no")}


def _pca_vs_ae(t: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for latent in sorted(t["latent_size"].unique()):
        sel = t[t.latent_size == latent].set_index("method")["test_sq_err_per_image"]
        if {"pca", "ae"} <= set(sel.index):
            out.append(_row(f"pca_vs_ae latent {latent}", "ae test_sq_err_per_image < pca's",
                            f"ae {sel['ae']:.2f} vs pca {sel['pca']:.2f}", bool(sel["ae"] < sel["pca"])))
    return out


def _finetune(t: pd.DataFrame) -> list[dict[str, Any]]:
    col = f"{FEW_LABELS} labels"
    if f"{col}_mean" not in t.columns:
        return []
    rows = t.set_index("method_key")
    if not {"finetuned", "scratch"} <= set(rows.index):
        return []
    ft, sc = rows.loc["finetuned"], rows.loc["scratch"]
    margin = max(float(ft[f"{col}_std"]), float(sc[f"{col}_std"]))
    gap = float(sc[f"{col}_mean"]) - float(ft[f"{col}_mean"])
    ok = None if math.isnan(margin) else gap > margin
    return [_row(f"finetune at {FEW_LABELS} labels",
                 "fine-tuned pretrained encoder's test error below from-scratch by more than the larger std",
                 f"{ft[col]} vs {sc[col]} % (gap {gap:.2f}, larger std {margin:.2f})", ok)]


def _augmentation(t: pd.DataFrame) -> list[dict[str, Any]]:
    sel = t[(t.labels == FEW_LABELS) & t["generated"].astype(bool)] if "generated" in t.columns else t.iloc[0:0]
    if sel.empty:
        return []
    best = sel.sort_values("gain_pct_mean", ascending=False).iloc[0]
    ok = bool(best["gain_pct_mean"] > 0 and best["gain_pct_mean"] > best["gain_pct_std"])
    return [_row(f"augmentation at {FEW_LABELS} labels",
                 "some method adding generated images gains more than its std",
                 f"best: {best['method']} {best['gain_pct']} points", ok)]


def _generative(t: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for _, r in t[t.model != REAL_FLOOR_NAME].iterrows():
        ok = bool(r["recognised"] >= MIN_RECOGNISED and r["precision"] >= MIN_PRECISION)
        out.append(_row(f"generative_quality {r['model']}",
                        f"recognised >= {MIN_RECOGNISED:g} and precision >= {MIN_PRECISION:g}",
                        f"recognised {r['recognised']:.3f}, precision {r['precision']:.3f}, fid {r['fid']:.1f}", ok))
    return out


def field_checks(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per check the tables allow: ``check``, ``expected``, ``observed``, ``passed`` (yes/no/n/a)."""
    rows: list[dict[str, Any]] = []
    for name, fn in (("pca_vs_ae", _pca_vs_ae), ("finetune", _finetune), ("augmentation", _augmentation),
                     ("generative_quality", _generative)):
        if name in tables and not tables[name].empty:
            rows += fn(tables[name])
    return pd.DataFrame(rows, columns=["check", "expected", "observed", "passed"])
