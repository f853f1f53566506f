"""Random codes decoded by an ``ae`` and a ``vae`` of the same architecture and code size: is the code
space organised? Codes drawn from N(0, I), from a Gaussian fitted to the training images' codes, and
points on straight lines between the codes of two test images (of different classes), each scored
like samples (recognised share, precision, recall, FID beside the real floor); the interpolation paths
also by their roughness in the feature CNN's space (docs/metrics.md, "latent_sampling")."""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from genlib.evaluation._utils import batched, cpu_generator, grid_figure
from genlib.evaluation.generative import (
    RECOGNISED_CONFIDENCE,
    _coverage,
    _kth_neighbour_radii,
    frechet_distance_features,
    real_features,
    real_floor_row,
)
from genlib.evaluation.profiles import EvalProfile
from genlib.evaluation.report import EvaluationReport

logger = logging.getLogger(__name__)

# Row keys and their readable names, in table order.
CODES = {
    "normal": "N(0, I)",
    "fitted": "Gaussian fitted to the train codes",
    "interpolation": "straight lines between test codes (inner points)",
}
FIGURE_PAIRS = 4  # interpolation paths shown per model in the figure
_SHORT = {"normal": "N(0, I)", "fitted": "fitted"}


def path_roughness(paths: Tensor) -> float:
    """Roughness of decoded paths in some feature space: 0 for straight paths walked at an even pace.

    For P paths of T points f_0 ... f_{T-1} (paths (P, T, D)), with d_i = |f_{i+1} - f_i|^2:
    (T - 1) * sum_{p,i} d_{p,i} / sum_p |f_{T-1} - f_0|^2 - 1. By Cauchy-Schwarz and the triangle
    inequality it is >= 0, with equality exactly when every path is a straight segment cut into equal
    steps. It is the perceptual path length of Karras et al. (2019) at step 1 / (T - 1) (mean squared
    step over the squared step size), divided by what a straight, even path of the same ends would have.
    """
    if paths.dim() != 3 or paths.shape[1] < 2:
        raise ValueError(f"paths must be (P, T >= 2, D), got {tuple(paths.shape)}")
    p = paths.double()
    steps = (p[:, 1:] - p[:, :-1]).pow(2).sum(-1).sum()
    ends = (p[:, -1] - p[:, 0]).pow(2).sum(-1).sum()
    if float(ends) == 0.0:
        return float("nan")
    return max(float((p.shape[1] - 1) * steps / ends - 1.0), 0.0)


def fitted_gaussian_codes(codes: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """n draws (n, K) from a full-covariance Gaussian fitted to codes (N, K) (float64 fit, jitter 1e-6 I)."""
    c = codes.double()
    mean = c.mean(0)
    cov = torch.cov(c.T).reshape(c.shape[1], c.shape[1]) + 1e-6 * torch.eye(c.shape[1], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    eps = torch.randn(n, c.shape[1], generator=generator, dtype=torch.float64)
    return (mean + eps @ chol.T).float()


def interpolation_pairs(y: Tensor, n_pairs: int, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (a, b), each (P,), of test images paired at random, of different classes where labels allow."""
    gen = cpu_generator(seed)
    n = y.shape[0]
    a, b = torch.randperm(n, generator=gen), torch.randperm(n, generator=gen)
    keep = (a != b) & (y.cpu()[a] != y.cpu()[b])
    if int(keep.sum()) < n_pairs:  # one class only, or too few images: any two different images
        keep = a != b
    return a[keep][:n_pairs], b[keep][:n_pairs]


def _score(images: Tensor, classifier: Any, data: Any, profile: EvalProfile) -> dict[str, float]:
    """Recognised share, precision, recall and FID of images (N, C, H, W) against the test split."""
    bs = profile.eval_batch_size
    feats, probs = classifier.embed(images, batch_size=bs)
    test_f, _ = real_features(classifier, data, "test", None, profile.seed, bs)
    dev, k = next(classifier.parameters()).device, profile.pr_k
    # precision_recall's arithmetic, with the real set's k-NN radii (all test images against each other,
    # the costly part) computed once per data set and k instead of once per scored set.
    key = ("test_radii", str(getattr(data, "digest", id(data))), k, profile.seed)
    real = test_f.to(dev).double()
    if key not in classifier.real_cache:
        classifier.real_cache[key] = _kth_neighbour_radii(real, k, bs)
    fake = feats.to(dev).double()
    precision = _coverage(fake, real, classifier.real_cache[key], bs)
    recall = _coverage(real, fake, _kth_neighbour_radii(fake, k, bs), bs)
    return {
        "n_images": int(images.shape[0]),
        "recognised": float((probs.max(1).values >= RECOGNISED_CONFIDENCE).float().mean()),
        "precision": precision,
        "recall": recall,
        "fid": frechet_distance_features(feats, test_f),
    }


def _skipped_rows(reasons: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame([{"model": "suite", "section": k, "reason": v} for k, v in reasons.items()],
                        columns=["model", "section", "reason"])


def _skipped() -> EvaluationReport:
    """The report of data without labels: one ``skipped`` row (the suite's table of what did not run)."""
    from genlib.data.splits import UNLABELLED_REASON

    # The row genlib.evaluation.suite.skipped_table makes (not imported: the suite imports this module).
    return EvaluationReport(tables={"skipped": _skipped_rows({"latent_sampling": f"{UNLABELLED_REASON} (the feature CNN that scores the decoded codes learns from them)"})})


def latent_sampling(data: Any, profile: EvalProfile, *, device: torch.device | str,
                    trained: dict[tuple[str, int], Any] | None = None, classifier: Any | None = None) -> EvaluationReport:
    """Decode random and interpolated codes of ``profile.sampling_models`` at ``profile.sampling_latent_sizes``.

    Args:
        data: a DataSplits (x_* (N, C, H, W) in [0, 1], y_* (N,)); the feature CNN needs labels.
        trained: models by (name, latent size), as ``pca_vs_autoencoders`` keeps them; the missing ones are
            trained here with the same settings.
        classifier: the feature CNN (loaded or trained from its cache when None).
    Returns:
        EvaluationReport with table "latent_sampling" (a row per model, latent size and kind of code),
        figures "latent_interpolation_{L}" (rows of interpolations, each ae row above the vae row of the
        same pair) and "latent_samples_{L}", metrics "latent_sampling/{model}_{codes}/latent_{L}/{quantity}".
    """
    from genlib.evaluation.classifier import get_feature_classifier
    from genlib.evaluation.pca import train_suite_model
    from genlib.data.splits import has_labels
    from genlib.training import resolve_device

    if not has_labels(data):
        return _skipped()
    device = resolve_device(device)
    t0 = time.perf_counter()
    clf = classifier if classifier is not None else get_feature_classifier(
        data, device=device, epochs=profile.classifier_epochs)
    floor = real_floor_row(clf, data, n=profile.fid_samples, k=profile.pr_k, splits=profile.is_splits,
                           seed=profile.seed, batch_size=profile.eval_batch_size)
    bs, n, steps = profile.eval_batch_size, profile.fid_samples, profile.interpolation_steps
    a, b = interpolation_pairs(data.y_test, profile.interpolation_pairs, profile.seed)
    t = torch.linspace(0, 1, steps)[None, :, None]  # (1, T, 1)
    rows, metrics, figures = [], {}, {}
    for latent in profile.sampling_latent_sizes:
        path_rows: list[tuple[str, Tensor]] = []
        sample_rows: list[tuple[str, Tensor]] = []
        for name in profile.sampling_models:
            model = (trained or {}).get((name, int(latent)))
            if model is None:
                model = train_suite_model(name, data, latent, profile, device)
            model = model.to(device).eval()
            codes_train = batched(model.encode, data.x_train, device=device, batch_size=bs)
            gen = cpu_generator(profile.seed)
            z = {"normal": torch.randn(n, latent, generator=gen), "fitted": fitted_gaussian_codes(codes_train, n, gen)}
            za = batched(model.encode, data.x_test[a.to(data.x_test.device)], device=device, batch_size=bs)
            zb = batched(model.encode, data.x_test[b.to(data.x_test.device)], device=device, batch_size=bs)
            lines = (1 - t) * za[:, None] + t * zb[:, None]  # (P, T, K)
            decoded = {k: batched(model.decode, v, device=device, batch_size=bs).clamp(0, 1) for k, v in z.items()}
            path_images = batched(model.decode, lines.flatten(0, 1), device=device, batch_size=bs).clamp(0, 1)
            path_images = path_images.view(len(a), steps, *path_images.shape[1:])
            decoded["interpolation"] = path_images[:, 1:-1].flatten(0, 1)
            path_feats = clf.embed(path_images.flatten(0, 1), batch_size=bs)[0].view(len(a), steps, -1)
            for key, images in decoded.items():
                row = {"model": name, "latent_size": int(latent), "codes": CODES[key], "codes_key": key,
                       **_score(images, clf, data, profile), "fid_real_floor": floor["fid"],
                       "recognised_real_floor": floor["recognised"],
                       "path_roughness": float("nan"), "pixel_path_roughness": float("nan")}
                if key == "interpolation":
                    row["path_roughness"] = path_roughness(path_feats)
                    row["pixel_path_roughness"] = path_roughness(path_images.flatten(2))
                rows.append(row)
                for q in ("recognised", "precision", "recall", "fid", "path_roughness", "pixel_path_roughness"):
                    if q in ("recognised", "precision", "recall", "fid") or key == "interpolation":
                        metrics[f"latent_sampling/{name}_{key}/latent_{latent}/{q}"] = float(row[q])
            path_rows += [(f"{name} {i + 1}", path_images[i]) for i in range(min(FIGURE_PAIRS, len(a)))]
            sample_rows += [(f"{name} {_SHORT[k]}", decoded[k][:steps]) for k in ("normal", "fitted")]
        # Each pair's ae row directly above its vae row (the models in profile order).
        order = sorted(range(len(path_rows)), key=lambda i: (int(path_rows[i][0].split(" ")[1]), i))
        figures[f"latent_interpolation_{latent}"] = grid_figure(
            [path_rows[i][1] for i in order], [path_rows[i][0] for i in order],
            f"Straight lines between test codes, latent size {latent}")
        figures[f"latent_samples_{latent}"] = grid_figure(
            [r for _, r in sample_rows], [lbl for lbl, _ in sample_rows],
            f"Decoded random codes, latent size {latent}: N(0, I) and a Gaussian fitted to the train codes")
    table = pd.DataFrame(rows)
    logger.info("latent_sampling done in %.1fs", time.perf_counter() - t0)
    return EvaluationReport(tables={"latent_sampling": table}, figures=figures, metrics=metrics)
