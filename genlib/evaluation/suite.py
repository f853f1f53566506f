"""The suite: the experiments that train their own models on ``data``, as independent sections.

Each section is a plain function ``run(data, profile, *, device) -> EvaluationReport`` registered here with
what it needs (labels or not). A pipeline runs each section as its own job, so several run at once on a pool of
workers; :func:`evaluate_suite` runs them one after the other in this process and combines their reports.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch

from genlib.data.splits import UNLABELLED_REASON, has_labels
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


def plan_sections(data: Any) -> tuple[list[str], dict[str, str]]:
    """(the sections that apply to ``data`` in start order, {skipped section or part: why}); without labels the
    conditional models are named among the skipped too (the pipeline leaves them out)."""
    from genlib.models.catalog import builtin_names, model_info

    run, skipped = [], {}
    for s in _SECTIONS.values():
        if s.needs_labels and not has_labels(data):
            skipped[s.name] = f"{UNLABELLED_REASON} ({s.summary})"
        else:
            run.append(s.name)
    if not has_labels(data):
        conditional = ", ".join(n for n in builtin_names() if model_info(n).conditional)
        skipped[f"conditional models ({conditional})"] = f"{UNLABELLED_REASON}: they generate by class"
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
    """The ``skipped`` rows of the suite: (model "suite", section, reason) per section or part that did not run."""
    return pd.DataFrame([{"model": "suite", "section": k, "reason": v} for k, v in skipped.items()],
                        columns=["model", "section", "reason"])


def add_skipped(tables: dict[str, pd.DataFrame], skipped: dict[str, str]) -> None:
    """Append :func:`skipped_table` rows to ``tables["skipped"]`` (made when absent)."""
    rows = skipped_table(skipped)
    tables["skipped"] = pd.concat([tables["skipped"], rows], ignore_index=True) if "skipped" in tables else rows


def evaluate_suite(data: Any, profile: EvalProfile, *, device: torch.device | str) -> EvaluationReport:
    """Every section that applies to ``data``, one after the other, combined into one report (tables named as
    each section names them; ``skipped`` lists the sections and parts left out for want of labels)."""
    names, skipped = plan_sections(data)
    report = combine_reports([evaluate_section(n, data, profile, device=device) for n in names])
    if skipped:
        add_skipped(report.tables, skipped)
    return report


# --- the sections ----------------------------------------------------------------------------------------------
# Registered longest first (see register_section). Their imports are inside so that listing sections is cheap.


@register_section("pca_vs_ae", needs_labels=False,
                  summary="it compares PCA with ae, vae and rbm codes at each latent size: reconstruction error and a "
                          "linear probe; with labels also the ae and vae decoding random codes, and the few-label "
                          "rows of PCA, vae and rbm codes")
def _pca_vs_ae(data: Any, profile: EvalProfile, *, device: torch.device) -> EvaluationReport:
    from genlib.evaluation.pca import pca_vs_autoencoders

    trained: dict[tuple[str, int], Any] = {}  # the fitted methods by (method, latent size): reused below
    table, figures, metrics, _, recon_rows = pca_vs_autoencoders(data, profile, device=device, keep=trained)
    tables = {"pca_vs_ae": table, "reconstruction": pd.DataFrame(recon_rows)}
    if not has_labels(data):  # the rest of the section needs none
        tables["pca_vs_ae"] = table.drop(columns="probe_accuracy", errors="ignore")
        metrics = {k: v for k, v in metrics.items() if not k.endswith("/probe_accuracy")}
        add_skipped(tables, {"pca_vs_ae probe_accuracy": f"{UNLABELLED_REASON} (a linear probe predicts them "
                                                         "from the codes)",
                             "latent_sampling": f"{UNLABELLED_REASON} (the feature CNN that scores the decoded codes "
                                                "learns from them)"})
        return EvaluationReport(tables=tables, figures=figures, metrics=metrics)
    own = EvaluationReport(tables=tables, figures=figures, metrics=metrics)
    return combine_reports([own, *_reusing_models(data, profile, device, trained)])


def _reusing_models(data: Any, profile: EvalProfile, device: torch.device,
                    trained: dict[tuple[str, int], Any]) -> list[EvaluationReport]:
    """The parts that reuse the section's models instead of training their own: random codes decoded
    (latent_sampling) and the few-label rows of frozen PCA, vae and rbm codes (rows of "finetune")."""
    from genlib.evaluation.finetune import frozen_codes_experiment, frozen_representations
    from genlib.evaluation.latent_sampling import latent_sampling

    t0 = time.perf_counter()
    sampling = latent_sampling(data, profile, device=device, trained=trained)
    sampling.metrics["suite_seconds/latent_sampling"] = time.perf_counter() - t0
    reps = frozen_representations(data, profile, device, cached=trained)
    wide, long, metrics = frozen_codes_experiment(data, profile, device=device, representations=reps)
    return [sampling, EvaluationReport(tables={"finetune": wide, "finetune_long": long}, metrics=metrics)]


@register_section("generative_vs_discriminative", needs_labels=True,
                  summary="it compares Bayes' rule on a cvae's per-class ELBO with logistic regression and the encoder "
                          "from scratch as the labelled images grow")
def _generative_vs_discriminative(data: Any, profile: EvalProfile, *, device: torch.device) -> EvaluationReport:
    from genlib.evaluation.gen_vs_disc import generative_vs_discriminative

    return generative_vs_discriminative(data, profile, device=device)


@register_section("finetune", needs_labels=True,
                  summary="it fine-tunes an unsupervised ae's encoder with few labels against the same net from "
                          "scratch")
def _finetune(data: Any, profile: EvalProfile, *, device: torch.device) -> EvaluationReport:
    from genlib.evaluation.finetune import finetune_experiment, pretrain_ae

    wide, long, figures, metrics = finetune_experiment(data, profile, device=device,
                                                       pretrained=pretrain_ae(data, profile, device))
    return EvaluationReport(tables={"finetune": wide, "finetune_long": long}, figures=figures, metrics=metrics)


@register_section("augmentation", needs_labels=True,
                  summary="it measures a classifier's gain from conditional generators' samples and from classic "
                          "augmentation")
def _augmentation(data: Any, profile: EvalProfile, *, device: torch.device) -> EvaluationReport:
    from genlib.evaluation.augmentation import augmentation_experiment

    aug, aug_long, figures, metrics = augmentation_experiment(data, profile, device=device)
    return EvaluationReport(tables={"augmentation": aug, "augmentation_long": aug_long}, figures=figures,
                            metrics=metrics)


@register_section("real_floor", needs_labels=False,
                  summary="the real images' own sample-quality row (train against test) in the feature space that "
                          "scores samples")
def _real_floor(data: Any, profile: EvalProfile, *, device: torch.device) -> EvaluationReport:
    from genlib.evaluation.features import get_feature_space, reference_row

    # The very row the sample-quality gates compare with (disk-cached: data preparation computed it or will).
    space = get_feature_space(data, device=device, epochs=profile.classifier_epochs)
    floor = reference_row(space, data, n=profile.fid_samples, k=profile.pr_k, splits=profile.is_splits,
                          seed=profile.seed, batch_size=profile.eval_batch_size)
    floor = {k: v for k, v in floor.items() if k != "fid_scale"}
    metrics = {"fid_real_floor": floor["fid"]}
    if math.isfinite(space.test_accuracy):  # the contrastive space of unlabelled data has no accuracy
        metrics["feature_classifier_test_accuracy"] = float(space.test_accuracy)
    return EvaluationReport(tables={"generative_quality": pd.DataFrame([floor])}, metrics=metrics)
