"""``evaluate_model``: every per-model measurement the model's capabilities allow, as one report."""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd
import torch

from genlib.data.splits import UNLABELLED_REASON, has_labels
from genlib.evaluation._utils import cpu_generator
from genlib.evaluation.features import get_feature_space, reference_metrics, reference_row
from genlib.evaluation.generative import generative_row, samples_figure
from genlib.evaluation.likelihood import rbm_likelihood_rows, vae_likelihood_rows
from genlib.evaluation.profiles import EvalProfile
from genlib.evaluation.reconstruction import (
    denoising_row,
    figure_indices,
    reconstruct_all,
    reconstruction_figure,
    reconstruction_tables,
)
from genlib.evaluation.report import EvaluationReport

logger = logging.getLogger(__name__)


def loss_metrics(model: Any, x: torch.Tensor, y: torch.Tensor, *, device: torch.device, batch_size: int) -> dict[str, float]:
    """``test_loss`` and every named loss term on (x (N, C, H, W), y (N,)), in float32 outside autocast:
    the one definition of these test metrics (training only reports validation values)."""
    from genlib.training import evaluate

    return evaluate(model, x, y, device, batch_size, prefix="test", exact=True)


def test_metrics(model: Any, data: Any, *, device: torch.device | str, batch_size: int = 1024) -> dict[str, float]:
    """The cheap test metrics (loss terms and, for models that reconstruct, the reconstruction errors),
    defined as in :func:`evaluate_model`, for a quick look after training (``genlib train``)."""
    from genlib.training import resolve_device

    device = resolve_device(device)
    was_training = model.training
    model.to(device).eval()
    metrics = loss_metrics(model, data.x_test, data.y_test, device=device, batch_size=batch_size)
    if model.reconstructs:
        with torch.no_grad():
            recon = reconstruct_all(lambda xb, yb: model.reconstruct(xb, yb), data.x_test, data.y_test,
                                    device=device, batch_size=batch_size)
        row, _ = reconstruction_tables(model.name, recon, data.x_test, data.y_test)
        metrics.update({k: float(row[k]) for k in ("test_mse", "test_sq_err_per_image", "test_bce")})
    model.train(was_training)
    return metrics


def evaluate_model(
    model: Any,
    data: Any,
    profile: EvalProfile,
    *,
    device: torch.device | str,
    features: Any | None = None,
) -> EvaluationReport:
    """Evaluate one trained model on the test split of ``data``.

    What is measured follows the model's class attributes, never its name:
    ``reconstructs`` -> reconstruction errors (+ per class, + figure); a config with ``noise``
    (the ``dae``) -> denoising gain; ``generates`` -> FID / precision / recall (+ recognised and
    Inception Score when the data have labels, + class accuracy when ``conditional``) beside the real
    train-vs-test reference row, whose values the metrics carry as ``reference_*`` (on data without labels in
    the contrastive encoder's space, the label scores in a "skipped" table row saying why); ``likelihood``
    "variational" -> ELBO and IWAE NLL; "energy" -> pseudo-likelihood and AIS log-likelihood.
    Every model: ``test_loss`` and its loss terms (float32, outside autocast).

    Args:
        model: a GenerativeModel; moved to ``device`` and put in eval mode (its mode is restored after).
        data: a DataSplits (x_* (N, C, H, W) in [0, 1], y_* (N,)).
        profile: sample counts, seeds, IWAE k, AIS schedule.
        features: the feature space (genlib.evaluation.features.get_feature_space: the feature classifier
            with labels, the contrastive encoder without); built (or loaded from cache) for ``data`` when None.
    Returns:
        EvaluationReport named after the model; every table row has a "model" column.
    """
    from genlib.training import resolve_device

    device = resolve_device(device)
    was_training = model.training
    model.to(device).eval()
    tables: dict[str, pd.DataFrame] = {}
    figures: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    x_test, y_test = data.x_test, data.y_test
    bs, seed = profile.eval_batch_size, profile.seed
    labelled = has_labels(data)
    skipped: list[dict[str, str]] = []  # what the data does not allow, with why: the "skipped" table
    t0 = time.perf_counter()
    metrics.update(loss_metrics(model, x_test, y_test, device=device, batch_size=bs))

    def recon_fn(xb, yb):
        return model.reconstruct(xb, yb)

    with torch.no_grad():
        if model.reconstructs:
            recon = reconstruct_all(recon_fn, x_test, y_test, device=device, batch_size=bs)
            row, per_class = reconstruction_tables(model.name, recon, x_test, y_test)
            tables["reconstruction"] = pd.DataFrame([row])
            if labelled:  # one "class" of unlabelled images would repeat the row above
                tables["reconstruction_per_class"] = per_class
            metrics.update({k: row[k] for k in ("test_mse", "test_sq_err_per_image", "test_bce")})
            idx = figure_indices(y_test, profile.figure_images)
            noisy = None
            if model.noise is not None:
                kind, level = model.noise
                drow, noisy_all = denoising_row(
                    model.name, recon_fn, x_test, y_test, kind, level, device=device,
                    batch_size=bs, seed=seed, clean_sq_err=row["test_sq_err_per_image"],
                )
                tables["denoising"] = pd.DataFrame([drow])
                metrics.update({
                    "test_noisy_input_sq_err_per_image": drow["noisy_input_sq_err_per_image"],
                    "test_denoised_sq_err_per_image": drow["denoised_sq_err_per_image"],
                    "denoising_gain": drow["denoising_gain"],
                })
                noisy = noisy_all[idx]
                recon_shown = reconstruct_all(recon_fn, noisy, y_test[idx], device=device, batch_size=bs)
            else:
                recon_shown = recon[idx]
            figures[f"reconstruction_{model.name}"] = reconstruction_figure(model.name, x_test[idx].cpu(), recon_shown, noisy)

        if model.generates:
            clf = features or get_feature_space(data, device=device, epochs=profile.classifier_epochs)
            if not labelled:
                skipped.append({"model": model.name, "section": "generative_quality", "reason": UNLABELLED_REASON +
                                " (recognised, inception score and class accuracy need a classifier of them; fid, "
                                "precision and recall use the contrastive encoder's features)"})
            kw = dict(k=profile.pr_k, splits=profile.is_splits, seed=seed, batch_size=bs)
            grow, samples, labels = generative_row(
                model, data, clf, n=profile.fid_samples, **kw
            )
            floor = reference_row(clf, data, n=profile.fid_samples, **kw)
            tables["generative_quality"] = pd.DataFrame([{k: v for k, v in floor.items() if k != "fid_scale"}, grow])
            keys = ["fid", "precision", "recall"] + (["inception_score", "recognised"] if labelled else [])
            metrics.update({k: grow[k] for k in keys})
            if model.conditional and labelled:
                metrics["class_accuracy"] = grow["class_accuracy"]
            metrics["fid_real_floor"] = floor["fid"]
            metrics.update(reference_metrics(floor, labelled))
            if labelled:
                metrics["feature_classifier_test_accuracy"] = float(clf.test_accuracy)
            figures[f"samples_{model.name}"] = samples_figure(model.name, samples, labels)

    n_lik = profile.likelihood_images
    x_lik, y_lik = x_test, y_test
    if model.likelihood is not None:
        # A seeded shuffle: the file's order may be by class, and the likelihood_images (and RAISE's first
        # raise_images) must be a random subset, not the first classes.
        idx = torch.randperm(x_test.shape[0], generator=cpu_generator(seed))[:n_lik].to(x_test.device)
        x_lik, y_lik = x_test[idx], y_test[idx]
    if model.likelihood == "variational":
        rows, m = vae_likelihood_rows(
            model, x_lik, y_lik, k=profile.iwae_k, chunk=profile.iwae_chunk, elbo_samples=profile.elbo_samples,
            seed=seed, batch_size=bs, device=device,
        )
        tables["likelihood"] = pd.DataFrame(rows)
        metrics.update(m)
    elif model.likelihood == "energy":
        rows, m, _ = rbm_likelihood_rows(
            model, data.x_train, x_lik, n_chains=profile.ais_chains, n_betas=profile.ais_betas,
            pll_exact=profile.pll_exact, seed=seed, batch_size=bs, device=device,
            raise_betas=profile.raise_betas, raise_images=profile.raise_images,
        )
        tables["likelihood"] = pd.DataFrame(rows)
        metrics.update(m)

    model.train(was_training)
    if skipped:
        tables["skipped"] = pd.DataFrame(skipped)
    metrics = {k: float(v) for k, v in metrics.items()}
    logger.info("evaluated %s in %.1fs: %s", model.name, time.perf_counter() - t0,
                {k: round(v, 4) for k, v in metrics.items()})
    return EvaluationReport(tables=tables, figures=figures, metrics=metrics, name=model.name)
