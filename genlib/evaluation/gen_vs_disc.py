"""Generative versus discriminative classifiers as labels grow (Ng & Jordan 2002): test error against
the number of labelled training images for class-conditional VAEs (``profile.gvd_generative``) that
classify by Bayes' rule with their per-class ELBO, and for logistic regression on the pixels and the
suite's encoder architecture with a linear head trained from scratch (docs/metrics.md,
"generative_vs_discriminative")."""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from genlib.errors import ConfigError
from genlib.evaluation._utils import cpu_generator, format_mean_std, mean_std, seeded
from genlib.evaluation.profiles import EvalProfile
from genlib.evaluation.report import EvaluationReport

logger = logging.getLogger(__name__)

TABLE = "generative_vs_discriminative"
# Discriminative classifier keys and readable names; the generative ones are "<model>_bayes" (classifiers()).
DISCRIMINATIVE = {
    "logistic": "logistic regression on the pixels (L2, C = 1)",
    "encoder_scratch": "encoder architecture + linear head, from scratch",
}


def classifiers(profile: EvalProfile) -> dict[str, tuple[str, str]]:
    """{key: (kind, readable name)} in table order: the generative ones first.

    Raises ConfigError for a ``gvd_generative`` model without a variational likelihood (Bayes' rule needs
    log p(x | y) bounded per class: a conditional model's ELBO with each label, or one model per class).
    """
    from genlib.models.catalog import model_info

    out: dict[str, tuple[str, str]] = {}
    for name in profile.gvd_generative:
        info = model_info(name)
        if info.likelihood != "variational":
            raise ConfigError(f"gvd_generative: {name!r} has no ELBO to classify with (a VAE family is needed)")
        how = "one model, ELBO with each label" if info.conditional else "one model per class"
        out[f"{name}_bayes"] = ("generative", f"{name} ({how}), Bayes' rule on the per-class ELBO")
    return {**out, **{k: ("discriminative", v) for k, v in DISCRIMINATIVE.items()}}


def label_sizes(requested: tuple[int, ...], n_train: int) -> list[int]:
    """The sizes below the train split's, plus the whole split when some size reaches it; sorted, unique."""
    sizes = sorted({int(s) for s in requested if s < n_train})
    if any(s >= n_train for s in requested):
        sizes.append(int(n_train))
    return sizes


def labelled_subset(y: Tensor, n: int, seed: int) -> Tensor:
    """Sorted indices (n,) of y (N,): all of it when n >= N, class-balanced when every class can fill its
    share, else a uniformly random subset (imbalanced like the data)."""
    from genlib.data import balanced_subset

    if n >= y.shape[0]:
        return torch.arange(y.shape[0])
    try:
        return balanced_subset(y.cpu(), n, seed).cpu()
    except ConfigError:
        return torch.randperm(y.shape[0], generator=cpu_generator(seed))[:n].sort().values


def step_budget(n: int, profile: EvalProfile) -> int:
    """Optimiser steps of the trained classifiers for n labelled images: gvd_epochs passes, clipped."""
    epochs = math.ceil(profile.gvd_epochs * n / profile.classifier_batch_size)
    return int(min(max(epochs, profile.gvd_min_steps), profile.gvd_max_steps))


@torch.no_grad()
def class_elbos(model: Any, x: Tensor, labels: Tensor | None, eps: Tensor) -> Tensor:
    """ELBO per image of x (B, C, H, W) under a VAE (given labels (B,) when it is conditional), averaged over
    the posterior draws mu + eps_s * sigma for the standard normal draws eps (S, B, K). Returns (B,) float64."""
    mu, logvar = model.encode_dist(x, labels)
    std = (0.5 * logvar).exp()
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for e in eps:
        z = mu + e.to(mu.device) * std
        total += (model.log_px_given_z(model.decode_logits(z, labels), x) - model.kl_term(mu, logvar, z)).double()
    return total / eps.shape[0]


@torch.no_grad()
def bayes_rule_predict(models: Any, x: Tensor, num_classes: int, *, samples: int, device: torch.device,
                       batch_size: int, seed: int = 0) -> Tensor:
    """arg max_y ELBO(x | y): Bayes' rule with a uniform class prior, the ELBO standing in for log p(x | y).

    Args:
        models: one class-conditional VAE (the ELBO of x with each label), or a list of num_classes
            unconditional VAEs, one per class (None for a class without training images: never predicted).
        x: (N, C, H, W). samples: posterior draws per ELBO; every class gets the same standard normal
            draws (common random numbers: the class scores differ by the model, not by the noise).
    Returns:
        predicted labels (N,) on CPU.
    """
    per_class = isinstance(models, (list, tuple))
    gen = torch.Generator().manual_seed(int(seed))
    preds = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].to(device).float()
        latent = next(m for m in (models if per_class else [models]) if m is not None).latent_dim
        eps = torch.randn(samples, xb.shape[0], latent, generator=gen)
        scores = []
        for c in range(num_classes):
            model = models[c] if per_class else models
            if model is None:
                scores.append(torch.full((xb.shape[0],), -math.inf, dtype=torch.float64, device=device))
                continue
            labels = None if per_class else torch.full((xb.shape[0],), c, device=device, dtype=torch.long)
            scores.append(class_elbos(model, xb, labels, eps))
        preds.append(torch.stack(scores, 1).argmax(1).cpu())
    return torch.cat(preds)


def _bayes_error(name: str, data: Any, xs: Tensor, ys: Tensor, x_test: Tensor, y_test: Tensor,
                 profile: EvalProfile, steps: int, seed: int, device: torch.device) -> float:
    """Test error (%) of Bayes' rule with ``name``: one conditional model on the labelled images, or (an
    unconditional model) one per class on that class's images, each for the steps its images earn."""
    from genlib.evaluation.augment_data import train_generator
    from genlib.models.catalog import model_info

    n_classes = max(int(data.num_classes), 2)

    def train(x: Tensor, y: Tensor, n_steps: int) -> Any:
        settings = profile.model_copy(update={
            "generator_steps": {**profile.generator_steps, name: n_steps},
            "generator_overrides": {**profile.generator_overrides, name: profile.gvd_model_overrides.get(name, {})}})
        return train_generator(name, data, x, y, settings, device=device, seed=seed).eval()

    if model_info(name).conditional:
        models: Any = train(xs, ys, steps)
    else:
        models = []
        for c in range(n_classes):
            mine = ys == c
            models.append(train(xs[mine], ys[mine], step_budget(int(mine.sum()), profile)) if bool(mine.any())
                          else None)
    pred = bayes_rule_predict(models, x_test, n_classes, samples=profile.gvd_elbo_samples, device=device,
                              batch_size=profile.eval_batch_size, seed=seed)
    return 100 * float((pred != y_test.cpu()).float().mean())


def _logistic_error(xs: Tensor, ys: Tensor, x_test: Tensor, y_test: Tensor, max_iter: int) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if len(torch.unique(ys)) < 2:  # one class seen: it can only predict that class
        return 100 * float((y_test.cpu() != ys[0].cpu()).float().mean())
    with warnings.catch_warnings():
        # lbfgs may stop at max_iter on the larger sets; the error it reaches is what is reported.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(max_iter=max_iter).fit(xs.flatten(1).cpu().numpy(), ys.cpu().numpy())
    return 100 * (1 - float(clf.score(x_test.flatten(1).cpu().numpy(), y_test.cpu().numpy())))


def _encoder_error(data: Any, xs: Tensor, ys: Tensor, x_test: Tensor, y_test: Tensor, profile: EvalProfile,
                   steps: int, seed: int, device: torch.device) -> float:
    from genlib.evaluation.classifier import accuracy, train_classifier
    from genlib.evaluation.finetune import EncoderClassifier
    from genlib.evaluation.pca import suite_config_values
    from genlib.models import get_model
    from genlib.training import config_for_data

    name, latent = profile.pretrain_model, profile.pretrain_latent
    config = config_for_data(name, data, suite_config_values(name, latent, profile))
    with seeded(seed, device):
        net = EncoderClassifier(get_model(name, config).encoder, latent, max(int(data.num_classes), 2)).to(device)
    train_classifier(net, xs, ys, steps=steps, batch_size=profile.classifier_batch_size, lr=profile.classifier_lr,
                     seed=seed, device=device)
    return 100 * (1 - accuracy(net, x_test, y_test, device=device))


def crossover(table: pd.DataFrame, generative: str, discriminative: str) -> dict[str, Any]:
    """Where the discriminative classifier's mean test error drops below the generative one's.

    Returns {"sizes": sizes compared, "generative_wins": sizes where the generative error is lower,
    "between": (last size the generative one wins, next size) for the first such change, or None,
    "statement": one sentence}.
    """
    g = table[table.classifier == generative].set_index("labels")["test_error_pct_mean"]
    d = table[table.classifier == discriminative].set_index("labels")["test_error_pct_mean"]
    sizes = sorted(set(g.index) & set(d.index))
    wins = [s for s in sizes if g[s] < d[s]]
    between = next(((s0, s1) for s0, s1 in zip(sizes, sizes[1:]) if g[s0] < d[s0] and g[s1] >= d[s1]), None)
    if not sizes:
        statement = "no label size has both classifiers"
    elif between is not None:
        statement = (f"{discriminative} overtakes {generative} between {between[0]} and {between[1]} labels "
                     f"({g[between[0]]:.1f} vs {d[between[0]]:.1f} %, then {g[between[1]]:.1f} vs {d[between[1]]:.1f} %)")
    elif len(wins) == len(sizes):
        statement = f"no crossover: {generative} has the lower error at every size from {sizes[0]} to {sizes[-1]} labels"
    elif not wins:
        statement = f"no crossover: {discriminative} has the lower error at every size from {sizes[0]} to {sizes[-1]} labels"
    else:
        statement = (f"no generative-then-discriminative crossover: {generative} lower at {wins} labels only, "
                     f"of {sizes}")
    return {"sizes": sizes, "generative_wins": wins, "between": between, "statement": statement}


def _skipped_rows(reasons: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame([{"model": "suite", "section": k, "reason": v} for k, v in reasons.items()],
                        columns=["model", "section", "reason"])


def _skipped() -> EvaluationReport:
    """The report of data without labels: one ``skipped`` row (the suite's table of what did not run)."""
    from genlib.data.splits import UNLABELLED_REASON

    # The row genlib.evaluation.suite.skipped_table makes (not imported: the suite imports this module).
    return EvaluationReport(tables={"skipped": _skipped_rows({"generative_vs_discriminative": f"{UNLABELLED_REASON} (every classifier learns from them)"})})


def generative_vs_discriminative(data: Any, profile: EvalProfile, *, device: torch.device | str) -> EvaluationReport:
    """Test error (%) of each classifier of :func:`classifiers` for every labelled-set size and seed.

    Sizes are ``profile.gvd_label_sizes`` (whole train split for those reaching it); sizes up to
    ``gvd_all_seeds_up_to`` run every seed of ``gvd_seeds``, larger ones the first. Each run draws its own
    class-balanced subset. Test error is read on ``gvd_test_images`` test images (seeded subset).

    Returns:
        EvaluationReport with table "generative_vs_discriminative" (a row per classifier and size: mean and
        std over seeds), figure of the same name, metrics "generative_vs_discriminative/{classifier}/{labels}/
        test_error_pct" (and ``_std``), and "generative_vs_discriminative/{generative}_vs_{discriminative}/
        crossover/labels" (geometric mean of the two sizes bracketing the first crossover) where there is one.
    """
    from genlib.data.splits import has_labels
    from genlib.training import resolve_device

    if not has_labels(data):
        return _skipped()
    device = resolve_device(device)
    kinds = classifiers(profile)
    t_start = time.perf_counter()
    x_test, y_test = data.x_test, data.y_test
    if profile.gvd_test_images is not None and profile.gvd_test_images < x_test.shape[0]:
        idx = torch.randperm(x_test.shape[0], generator=cpu_generator(profile.seed))[: profile.gvd_test_images]
        idx = idx.sort().values.to(x_test.device)
        x_test, y_test = x_test[idx], y_test[idx]
    runs = []
    for n in label_sizes(profile.gvd_label_sizes, data.x_train.shape[0]):
        seeds = profile.gvd_seeds if n <= profile.gvd_all_seeds_up_to else profile.gvd_seeds[:1]
        steps = step_budget(n, profile)
        for seed in seeds:
            idx = labelled_subset(data.y_train, n, seed).to(data.y_train.device)
            xs, ys = data.x_train[idx], data.y_train[idx]
            for key in kinds:
                t0 = time.perf_counter()
                if key == "logistic":
                    err = _logistic_error(xs, ys, x_test, y_test, profile.gvd_logistic_max_iter)
                elif key == "encoder_scratch":
                    err = _encoder_error(data, xs, ys, x_test, y_test, profile, steps, seed, device)
                else:
                    err = _bayes_error(key.removesuffix("_bayes"), data, xs, ys, x_test, y_test, profile, steps, seed,
                                       device)
                runs.append({"classifier": key, "labels": n, "seed": seed, "steps": steps, "test_error_pct": err,
                             "seconds": time.perf_counter() - t0})
        logger.info("%s at %d labels: %s", TABLE, n,
                    {r["classifier"]: round(r["test_error_pct"], 2) for r in runs if r["labels"] == n})
    table, metrics = _summarise(pd.DataFrame(runs), x_test.shape[0], kinds)
    for gen in (k for k, (kind, _) in kinds.items() if kind == "generative"):
        for disc in (k for k, (kind, _) in kinds.items() if kind == "discriminative"):
            found = crossover(table, gen, disc)
            logger.info("%s: %s", TABLE, found["statement"])
            if found["between"] is not None:
                metrics[f"{TABLE}/{gen}_vs_{disc}/crossover/labels"] = float(np.sqrt(np.prod(found["between"])))
    figures = {TABLE: gvd_figure(table, kinds)} if not table.empty else {}
    logger.info("%s done in %.1fs", TABLE, time.perf_counter() - t_start)
    return EvaluationReport(tables={TABLE: table}, figures=figures, metrics=metrics)


def _summarise(long: pd.DataFrame, n_test: int, kinds: dict[str, tuple[str, str]]
               ) -> tuple[pd.DataFrame, dict[str, float]]:
    rows, metrics = [], {}
    for key, (kind, label) in kinds.items():
        for n, grp in long[long.classifier == key].groupby("labels", sort=True):
            mean, std = mean_std(grp["test_error_pct"].tolist())
            rows.append({"classifier": key, "kind": kind, "method": label, "labels": int(n), "seeds": len(grp),
                         "test_error_pct": format_mean_std(mean, std), "test_error_pct_mean": mean,
                         "test_error_pct_std": std, "steps": int(grp["steps"].iloc[0]),
                         "seconds_mean": float(grp["seconds"].mean()), "test_images": int(n_test)})
            metrics[f"{TABLE}/{key}/{n}/test_error_pct"] = mean
            if not math.isnan(std):
                metrics[f"{TABLE}/{key}/{n}/test_error_pct_std"] = std
    return pd.DataFrame(rows), metrics


def gvd_figure(table: pd.DataFrame, kinds: dict[str, tuple[str, str]]) -> Figure:
    """Test error (%) against labelled images (log scale), mean +- std over seeds; generative lines dashed."""
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for key, (kind, label) in kinds.items():
        grp = table[table.classifier == key].sort_values("labels")
        if grp.empty:
            continue
        ax.errorbar(grp["labels"], grp["test_error_pct_mean"], yerr=grp["test_error_pct_std"].fillna(0),
                    marker="o", capsize=3, linestyle="--" if kind == "generative" else "-", label=f"{label} ({kind})")
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("test error (%)")
    ax.set_title("Generative vs discriminative classifiers")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig
