"""What the field knows, checked on a run's tables: an autoencoder beats PCA, pretraining helps with
few labels, generated data can help a classifier, every sampler's samples look like digits, a VAE's
code space is organised where an AE's is not, generative classifiers win with few labels and
discriminative ones with many (Ng & Jordan 2002), and an RBM's hidden units are useful features.

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
        # Without labels nothing measures "recognised": the check cannot be read (n/a), the gates still apply.
        ok = None if pd.isna(r.get("recognised")) else bool(r["recognised"] >= MIN_RECOGNISED and
                                                             r["precision"] >= MIN_PRECISION)
        out.append(_row(f"generative_quality {r['model']}",
                        f"recognised >= {MIN_RECOGNISED:g} and precision >= {MIN_PRECISION:g}",
                        f"recognised {r['recognised']:.3f}, precision {r['precision']:.3f}, fid {r['fid']:.1f}", ok))
    return out


def _likelihood(name: str) -> str | None:
    """The family's likelihood capability ("variational", "energy") or None; "unknown" for unregistered names."""
    from genlib.errors import UnknownNameError
    from genlib.models.catalog import model_info

    try:
        return model_info(str(name)).likelihood
    except UnknownNameError:
        return "unknown"


def _rbm_features(t: pd.DataFrame) -> list[dict[str, Any]]:
    """Energy models' hidden probabilities (an RBM's) against PCA codes of the same size, at the largest size."""
    if not {"method", "latent_size", "probe_accuracy"} <= set(t.columns):
        return []
    out = []
    for name in [m for m in t["method"].unique() if m != "pca" and _likelihood(m) == "energy"]:
        both = t[t.method.isin([name, "pca"])].pivot_table(index="latent_size", columns="method",
                                                            values="probe_accuracy").dropna()
        if both.empty or {name, "pca"} - set(both.columns):
            continue
        latent = int(both.index.max())
        ours, pca = float(both.loc[latent, name]), float(both.loc[latent, "pca"])
        out.append(_row(f"{name} features probe latent {latent}",
                        f"logistic probe on the {name}'s hidden probabilities at least as accurate as on PCA codes of "
                        "the same size", f"{name} {ours:.4f} vs pca {pca:.4f}", ours >= pca))
    return out


def _rbm_few_labels(t: pd.DataFrame) -> list[dict[str, Any]]:
    col = f"{FEW_LABELS} labels"
    if f"{col}_mean" not in t.columns or "method_key" not in t.columns:
        return []
    rows = t.set_index("method_key")
    out = []
    for key in rows.index:
        name = str(key).removesuffix("_frozen")
        if not str(key).endswith("_frozen") or name == "pca" or "pca_frozen" not in rows.index \
                or _likelihood(name) != "energy":
            continue
        ours, pca = rows.loc[key], rows.loc["pca_frozen"]
        out.append(_row(f"{name} features at {FEW_LABELS} labels", f"linear head on {name} hidden probabilities: "
                        "lower test error than on PCA codes of the same size", f"{ours[col]} vs {pca[col]} %",
                        bool(float(ours[f"{col}_mean"]) < float(pca[f"{col}_mean"]))))
    return out


def _latent_sampling(t: pd.DataFrame) -> list[dict[str, Any]]:
    """The VAE's decoded random codes are read as digits more often than the AE's, and its paths are smoother."""
    if not {"model", "codes_key", "recognised"} <= set(t.columns):
        return []
    out = []
    models = list(t["model"].unique())
    # The claim compares a deterministic autoencoder with a variational one of the same architecture.
    pairs = [(a, v) for a in models if _likelihood(a) is None for v in models if _likelihood(v) == "variational"]
    for (a_name, v_name), latent in ((p, s) for p in pairs for s in sorted(t["latent_size"].unique())):
        sel = t[t.latent_size == latent].set_index(["model", "codes_key"])
        for key, what in (("normal", "codes drawn from N(0, I)"), ("fitted", "codes from a Gaussian fitted to the "
                          "train codes"), ("interpolation", "inner points of lines between test codes")):
            if (a_name, key) not in sel.index or (v_name, key) not in sel.index:
                continue
            ae, vae = sel.loc[(a_name, key)], sel.loc[(v_name, key)]
            observed = (f"recognised {v_name} {vae['recognised']:.3f} vs {a_name} {ae['recognised']:.3f}; "
                        f"fid {vae['fid']:.1f} vs {ae['fid']:.1f} (real floor {vae['fid_real_floor']:.1f})")
            ok = bool(vae["recognised"] > ae["recognised"])
            expected = f"{what}: the {v_name}'s decoded more often recognised than the {a_name}'s"
            if key == "interpolation":
                observed += f"; path roughness {v_name} {vae['path_roughness']:.3f} vs {a_name} " \
                            f"{ae['path_roughness']:.3f}"
                ok = ok and bool(vae["path_roughness"] < ae["path_roughness"])
                expected += ", and its paths smoother (lower path_roughness)"
            names = "" if (a_name, v_name) == pairs[0] else f" {a_name} vs {v_name}"
            out.append(_row(f"latent_sampling {key} latent {latent}{names}", expected, observed, ok))
    return out


def _gen_vs_disc(t: pd.DataFrame) -> list[dict[str, Any]]:
    """Ng & Jordan (2002): the generative classifier lower at the fewest labels, the discriminative at the most."""
    from genlib.evaluation.gen_vs_disc import crossover

    if "kind" not in t.columns:
        return []
    out = []
    for gen in t[t.kind == "generative"]["classifier"].unique():
        for disc in t[t.kind == "discriminative"]["classifier"].unique():
            found = crossover(t, gen, disc)
            sizes = found["sizes"]
            if not sizes:
                continue
            lo, hi = sizes[0], sizes[-1]
            ok = lo in found["generative_wins"] and hi not in found["generative_wins"] if len(sizes) > 1 else None
            out.append(_row(f"generative_vs_discriminative {gen} vs {disc}",
                            f"{gen} lower test error at {lo} labels, {disc} lower at {hi} (a crossover between)",
                            found["statement"], ok))
    return out


def field_checks(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per check the tables allow: ``check``, ``expected``, ``observed``, ``passed`` (yes/no/n/a)."""
    rows: list[dict[str, Any]] = []
    for name, fn in (("pca_vs_ae", _pca_vs_ae), ("finetune", _finetune), ("augmentation", _augmentation),
                     ("generative_quality", _generative), ("pca_vs_ae", _rbm_features), ("finetune", _rbm_few_labels),
                     ("latent_sampling", _latent_sampling), ("generative_vs_discriminative", _gen_vs_disc)):
        if name in tables and not tables[name].empty:
            rows += fn(tables[name])
    return pd.DataFrame(rows, columns=["check", "expected", "observed", "passed"])
