"""The suite: the experiments that train their own models on ``data``, as independent sections.

Each section is a plain function ``run(data, profile, *, device) -> EvaluationReport`` registered here with
what it needs (labels or not). A pipeline runs each section as its own job, so several run at once on a pool of
workers; :func:`evaluate_suite` runs them one after the other in this process and combines their reports.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch

from genlib.evaluation.profiles import EvalProfile
from genlib.evaluation.report import EvaluationReport, combine_reports

logger = logging.getLogger(__name__)

SectionFn = Callable[..., EvaluationReport]  # (data, profile, *, device) -> EvaluationReport


@dataclasses.dataclass(frozen=True)
class SuiteSection:
    """One experiment of the suite: ``name`` (stable: it names the section's MLflow run and its job),
    ``run``, whether it needs class labels, and a line saying what it measures."""

    name: str
    run: SectionFn
    needs_labels: bool
    summary: str


_SECTIONS: dict[str, SuiteSection] = {}


def register_section(name: str, *, needs_labels: bool, summary: str) -> Callable[[SectionFn], SectionFn]:
    """Decorator registering a section function under ``name`` (registration order = the order jobs start in:
    register the longest first, so that a pool of workers ends with the short ones)."""

    def wrap(fn: SectionFn) -> SectionFn:
        if name in _SECTIONS:
            raise ValueError(f"suite section {name!r} is already registered")
        _SECTIONS[name] = SuiteSection(name=name, run=fn, needs_labels=needs_labels, summary=summary)
        return fn

    return wrap


def list_sections() -> list[str]:
    """The registered section names, in the order they start."""
    return list(_SECTIONS)


def get_section(name: str) -> SuiteSection:
    try:
        return _SECTIONS[name]
    except KeyError:
        raise ValueError(f"unknown suite section {name!r}; known: {', '.join(_SECTIONS)}") from None


def has_labels(data: Any) -> bool:
    """Whether ``data`` has class labels the label-needing sections can use (at least two classes)."""
    return getattr(data, "y_train", None) is not None and int(getattr(data, "num_classes", 0) or 0) >= 2


def plan_sections(data: Any) -> tuple[list[str], dict[str, str]]:
    """(the sections that apply to ``data`` in start order, {skipped section: why})."""
    run, skipped = [], {}
    for s in _SECTIONS.values():
        if s.needs_labels and not has_labels(data):
            skipped[s.name] = f"needs class labels; {getattr(data, 'name', 'the data set')} has none"
        else:
            run.append(s.name)
    return run, skipped


def evaluate_section(name: str, data: Any, profile: EvalProfile, *, device: torch.device | str) -> EvaluationReport:
    """Run section ``name`` on ``data``; its report carries ``suite_seconds/<name>``.

    Args:
        data: a DataSplits (x_* (N, C, H, W) in [0, 1], y_* (N,) where labelled).
        profile: latent sizes, label budgets, seeds, steps.
    """
    from genlib.training import resolve_device

    section = get_section(name)
    t0 = time.perf_counter()
    report = section.run(data, profile, device=resolve_device(device))
    seconds = time.perf_counter() - t0
    report.metrics[f"suite_seconds/{name}"] = seconds
    logger.info("suite section %s done in %.1fs", name, seconds)
    return report


def skipped_table(skipped: dict[str, str]) -> pd.DataFrame:
    """The ``suite_skipped`` table: one row (section, reason) per section that did not run."""
    return pd.DataFrame([{"section": k, "reason": v} for k, v in skipped.items()], columns=["section", "reason"])


def evaluate_suite(data: Any, profile: EvalProfile, *, device: torch.device | str) -> EvaluationReport:
    """Every section that applies to ``data``, one after the other, combined into one report (tables named as
    each section names them; ``suite_skipped`` lists the sections that need labels ``data`` lacks)."""
    names, skipped = plan_sections(data)
    report = combine_reports([evaluate_section(n, data, profile, device=device) for n in names])
    if skipped:
        report.tables["suite_skipped"] = skipped_table(skipped)
    return report


# --- the sections ----------------------------------------------------------------------------------------------
# Registered longest first (see register_section). Their imports are inside so that listing sections is cheap.


@register_section("pca_vs_ae", needs_labels=True,
                  summary="PCA against ae and vae codes at each latent size: reconstruction error and a linear probe")
def _pca_vs_ae(data: Any, profile: EvalProfile, *, device: torch.device) -> EvaluationReport:
    from genlib.evaluation.pca import pca_vs_autoencoders

    table, figures, metrics, _, recon_rows = pca_vs_autoencoders(data, profile, device=device)
    return EvaluationReport(tables={"pca_vs_ae": table, "reconstruction": pd.DataFrame(recon_rows)},
                            figures=figures, metrics=metrics)


@register_section("finetune", needs_labels=True,
                  summary="an unsupervised ae's encoder fine-tuned with few labels against the same net from scratch")
def _finetune(data: Any, profile: EvalProfile, *, device: torch.device) -> EvaluationReport:
    from genlib.evaluation.finetune import finetune_experiment, pretrain_ae

    wide, long, figures, metrics = finetune_experiment(data, profile, device=device,
                                                       pretrained=pretrain_ae(data, profile, device))
    return EvaluationReport(tables={"finetune": wide, "finetune_long": long}, figures=figures, metrics=metrics)


@register_section("augmentation", needs_labels=True,
                  summary="a classifier's gain from cvae / cgan samples and from classic augmentation")
def _augmentation(data: Any, profile: EvalProfile, *, device: torch.device) -> EvaluationReport:
    from genlib.evaluation.augmentation import augmentation_experiment

    aug, aug_long, figures, metrics = augmentation_experiment(data, profile, device=device)
    return EvaluationReport(tables={"augmentation": aug, "augmentation_long": aug_long}, figures=figures,
                            metrics=metrics)


@register_section("real_floor", needs_labels=True,
                  summary="the real images' own sample-quality row (train against test): the floor of every metric")
def _real_floor(data: Any, profile: EvalProfile, *, device: torch.device) -> EvaluationReport:
    from genlib.evaluation.classifier import get_feature_classifier
    from genlib.evaluation.generative import real_floor_row

    clf = get_feature_classifier(data, device=device, epochs=profile.classifier_epochs)
    floor = real_floor_row(clf, data, n=profile.fid_samples, k=profile.pr_k, splits=profile.is_splits,
                           seed=profile.seed, batch_size=profile.eval_batch_size)
    return EvaluationReport(tables={"generative_quality": pd.DataFrame([floor])},
                            metrics={"fid_real_floor": floor["fid"],
                                     "feature_classifier_test_accuracy": float(clf.test_accuracy)})
