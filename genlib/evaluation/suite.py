"""``evaluate_suite``: the experiments that train their own models on ``data``."""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd
import torch

from genlib.data.splits import UNLABELLED_REASON, has_labels
from genlib.evaluation.augmentation import augmentation_experiment
from genlib.evaluation.classifier import get_feature_classifier
from genlib.evaluation.finetune import finetune_experiment, pretrain_ae
from genlib.evaluation.generative import real_floor_row
from genlib.evaluation.pca import pca_vs_autoencoders
from genlib.evaluation.profiles import EvalProfile
from genlib.evaluation.report import EvaluationReport

logger = logging.getLogger(__name__)


def evaluate_suite(data: Any, profile: EvalProfile, *, device: torch.device | str) -> EvaluationReport:
    """PCA vs ``ae`` vs ``vae`` over latent sizes, encoder fine-tuning over label budgets, and
    augmentation gains from ``cvae`` / ``cgan`` samples and classic augmentation.

    Besides its own tables ("pca_vs_ae", "finetune", "finetune_long", "augmentation",
    "augmentation_long") the report carries the data-only baselines of the per-model tables:
    PCA rows in "reconstruction" and the "real (train vs test)" floor in "generative_quality".
    On data without labels only PCA vs autoencoders runs (without its probe accuracy), and a "skipped" table
    names each part left out and why.

    Args:
        data: a DataSplits (x_* (N, C, H, W) in [0, 1], y_* (N,)).
        profile: latent sizes, label budgets, seeds, steps.
    Returns:
        EvaluationReport (unnamed: its metric names are already unique).
    """
    from genlib.training import resolve_device

    device = resolve_device(device)
    t_start = time.perf_counter()
    tables: dict[str, pd.DataFrame] = {}
    figures: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    pca_table, pca_figs, pca_metrics, aes, recon_rows = pca_vs_autoencoders(data, profile, device=device)
    tables["pca_vs_ae"] = pca_table
    tables["reconstruction"] = pd.DataFrame(recon_rows)
    figures.update(pca_figs)
    metrics.update(pca_metrics)
    timings["pca_vs_ae"] = time.perf_counter() - t0

    if not has_labels(data):  # the lead's sections with needs_labels replace this
        tables["pca_vs_ae"] = pca_table.drop(columns="probe_accuracy", errors="ignore")
        metrics = {k: v for k, v in metrics.items() if not k.endswith("/probe_accuracy")}
        tables["skipped"] = unlabelled_skips()
        metrics.update({f"suite_seconds/{k}": v for k, v in timings.items()})
        return EvaluationReport(tables=tables, figures=figures, metrics={k: float(v) for k, v in metrics.items()})

    t0 = time.perf_counter()
    ae = pretrain_ae(data, profile, device, cached=aes)
    wide, long, ft_figs, ft_metrics = finetune_experiment(data, profile, device=device, pretrained=ae)
    tables["finetune"] = wide
    tables["finetune_long"] = long
    figures.update(ft_figs)
    metrics.update(ft_metrics)
    timings["finetune"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    aug, aug_long, aug_figs, aug_metrics = augmentation_experiment(data, profile, device=device)
    tables["augmentation"] = aug
    tables["augmentation_long"] = aug_long
    figures.update(aug_figs)
    metrics.update(aug_metrics)
    timings["augmentation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    clf = get_feature_classifier(data, device=device, epochs=profile.classifier_epochs)
    floor = real_floor_row(clf, data, n=profile.fid_samples, k=profile.pr_k, splits=profile.is_splits,
                           seed=profile.seed, batch_size=profile.eval_batch_size)
    tables["generative_quality"] = pd.DataFrame([floor])
    metrics["fid_real_floor"] = floor["fid"]
    metrics["feature_classifier_test_accuracy"] = float(clf.test_accuracy)
    timings["real_floor"] = time.perf_counter() - t0

    for name, secs in timings.items():
        metrics[f"suite_seconds/{name}"] = secs
    logger.info("evaluation suite done in %.1fs: %s", time.perf_counter() - t_start,
                {k: round(v, 1) for k, v in timings.items()})
    return EvaluationReport(tables=tables, figures=figures, metrics={k: float(v) for k, v in metrics.items()})


def unlabelled_skips() -> pd.DataFrame:
    """The "skipped" table of a suite on data without labels: each part left out, and why."""
    from genlib.models.catalog import builtin_names, model_info

    conditional = ", ".join(n for n in builtin_names() if model_info(n).conditional)
    why = UNLABELLED_REASON
    rows = [("pca_vs_ae probe_accuracy", f"{why} (a linear probe predicts them from the codes)"),
            ("finetune", f"{why} (it trains classifiers on label budgets)"),
            ("augmentation", f"{why} (it trains classifiers, and conditional generators)"),
            ("generative_quality", f"{why} (the real floor uses a classifier of them)"),
            (f"conditional models ({conditional})", f"{why}: they generate by class")]
    return pd.DataFrame([{"model": "suite", "section": s, "reason": r} for s, r in rows])
