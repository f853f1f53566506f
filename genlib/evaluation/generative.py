"""Sample quality in a feature space (the feature CNN on labelled data, the contrastive encoder on unlabelled
data: genlib.evaluation.features): Frechet distance, improved precision and recall (Kynkaanniemi et al.
2019), and where there are class probabilities a classifier-based Inception Score, the share recognised and
class accuracy of conditional samples; plus the real train-vs-test reference row.

Nothing depends on the order of the data: subsets are seeded random draws and the Inception Score's splits
are taken over a seeded shuffle (class-sorted files give the same numbers as shuffled ones).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
import scipy.linalg
import torch
from matplotlib.figure import Figure
from torch import Tensor

from genlib.evaluation._utils import REAL_FLOOR_NAME, cpu_generator, grid_figure

# A sample is "recognised" when the feature classifier's top class has at least this probability.
RECOGNISED_CONFIDENCE = 0.9

logger = logging.getLogger(__name__)


def feature_statistics(features: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64 (covariance with N-1)."""
    f = np.asarray(features.cpu().double().numpy() if isinstance(features, Tensor) else features, dtype=np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    Args: mu* (D,), sigma* (D, D). Returns a float >= 0.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}")
    diff = mu1 - mu2
    covmean, singular = _sqrtm(sigma1 @ sigma2)
    if singular or not np.isfinite(covmean).all():
        # Singular products (fewer samples than dimensions, dead features) have no reliable root:
        # move both covariances off the singular set by eps * I, as pytorch-fid does.
        logger.info("singular covariance product in the Frechet distance; adding %g to the diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean, _ = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # Round-off gives the root of a nearly-PSD product tiny imaginary parts; large ones mean trouble.
        max_imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if max_imag > 1e-3:
            logger.warning("Frechet distance: imaginary component %.3g in the matrix square root", max_imag)
        covmean = covmean.real
    d2 = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    # Round-off can push an exact zero (identical sets) a hair below it.
    return max(d2, 0.0)


def _sqrtm(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """Principal square root of a and whether scipy found a singular."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
        out = scipy.linalg.sqrtm(a)
    root = out[0] if isinstance(out, tuple) else out
    return root, any(issubclass(w.category, scipy.linalg.LinAlgWarning) for w in caught)


def frechet_distance_features(f1: np.ndarray | Tensor, f2: np.ndarray | Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))


@torch.no_grad()
def _kth_neighbour_radii(f: Tensor, k: int, batch_size: int) -> Tensor:
    """Distance of each row of f (N, D) to its k-th nearest other row. Returns (N,)."""
    radii = []
    for start in range(0, f.shape[0], batch_size):
        d = torch.cdist(f[start : start + batch_size], f)
        # Index k, not k - 1: the nearest "neighbour" at distance 0 is the point itself.
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


@torch.no_grad()
def _coverage(points: Tensor, centres: Tensor, radii: Tensor, batch_size: int) -> float:
    """Fraction of points (N, D) inside at least one ball (centres (M, D), radii (M,))."""
    inside = []
    for start in range(0, points.shape[0], batch_size):
        d = torch.cdist(points[start : start + batch_size], centres)
        inside.append((d <= radii[None, :]).any(1))
    return float(torch.cat(inside).float().mean())


@torch.no_grad()
def precision_recall(real: Tensor, fake: Tensor, k: int = 3, batch_size: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of fake (M, D) against real (N, D) features.

    Each set's manifold is the union of balls around its points reaching their k-th nearest
    neighbour. Precision: fraction of fake inside the real manifold; recall: fraction of real
    inside the fake manifold. Both in [0, 1], higher is better.
    """
    if real.shape[0] <= k or fake.shape[0] <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points in each set")
    real, fake = real.double(), fake.double()
    precision = _coverage(fake, real, _kth_neighbour_radii(real, k, batch_size), batch_size)
    recall = _coverage(real, fake, _kth_neighbour_radii(fake, k, batch_size), batch_size)
    return precision, recall


def inception_score(probs: Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) from classifier probabilities (N, C); mean and std over ``splits`` chunks
    of a seeded shuffle of the rows (chunks in file order would each hold one class of class-sorted data,
    whose marginal p(y) is then one class: IS ~1).

    Between 1 and C; higher means confident and diverse predictions.
    """
    p = probs.double().clamp_min(1e-12)
    p = p[torch.randperm(p.shape[0], generator=cpu_generator(seed))]
    splits = max(1, min(splits, p.shape[0]))
    scores = []
    for chunk in torch.tensor_split(p, splits):
        marginal = chunk.mean(0, keepdim=True)
        kl = (chunk * (chunk.log() - marginal.log())).sum(1).mean()
        scores.append(float(kl.exp()))
    arr = np.asarray(scores)
    return float(arr.mean()), float(arr.std()) if len(arr) > 1 else math.nan


@torch.no_grad()
def draw_samples(model: Any, n: int, *, seed: int, batch_size: int) -> tuple[Tensor, Tensor | None]:
    """n samples (n, C, H, W) in [0, 1] on CPU; conditional models get balanced labels 0, 1, ..., C-1, 0, ...

    Returns (images, labels or None).
    """
    gen = cpu_generator(seed)
    labels = torch.arange(n) % model.config.num_classes if model.conditional else None
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        lab = None if labels is None else labels[start : start + m].to(model.device)
        out.append(model.sample(m, labels=lab, generator=gen).float().clamp(0, 1).cpu())
    return torch.cat(out), labels


def real_features(classifier: Any, data: Any, split: str, n: int | None, seed: int, batch_size: int):
    """Features and probabilities (None in a label-free space) of (a seeded random subset of n images, in
    random order, of) a real split, memoised on the feature space."""
    key = (str(getattr(data, "digest", id(data))), split, n, seed)
    if key not in classifier.real_cache:
        x = getattr(data, f"x_{split}")
        if n is not None and n < x.shape[0]:
            idx = torch.randperm(x.shape[0], generator=cpu_generator(seed))[:n]
            x = x[idx.to(x.device)]
        classifier.real_cache[key] = classifier.embed(x, batch_size=batch_size)
    return classifier.real_cache[key]


def _label_scores(probs: Tensor | None, splits: int, seed: int) -> dict[str, float]:
    """inception_score (+ std) and recognised of class probabilities (N, C); NaN in a label-free space."""
    if probs is None:
        return {"inception_score": math.nan, "inception_score_std": math.nan, "recognised": math.nan}
    is_mean, is_std = inception_score(probs, splits, seed)
    return {"inception_score": is_mean, "inception_score_std": is_std,
            "recognised": float((probs.max(1).values >= RECOGNISED_CONFIDENCE).float().mean())}


def real_floor_row(classifier: Any, data: Any, *, n: int, k: int, splits: int, seed: int, batch_size: int) -> dict[str, Any]:
    """The row "real (train vs test)": n train images (a seeded random subset) scored against the test split
    like a model's samples, in ``classifier``'s feature space (label scores NaN in a label-free space)."""
    key = ("floor", str(getattr(data, "digest", id(data))), n, k, splits, seed)
    if key in classifier.real_cache:
        return dict(classifier.real_cache[key])
    test_f, test_p = real_features(classifier, data, "test", None, seed, batch_size)
    n_train = min(n, data.x_train.shape[0])
    train_f, train_p = real_features(classifier, data, "train", n_train, seed, batch_size)
    dev = next(classifier.parameters()).device  # the k-NN distances are the costly part: run them on the device
    precision, recall = precision_recall(test_f.to(dev), train_f.to(dev), k)
    scores = _label_scores(train_p, splits, seed)
    row = {
        "model": REAL_FLOOR_NAME,
        "n_samples": n_train,
        "fid": frechet_distance_features(train_f, test_f),
        "precision": precision,
        "recall": recall,
        "inception_score": scores["inception_score"],
        "inception_score_std": scores["inception_score_std"],
        "class_accuracy": float(classifier.test_accuracy),
        "recognised": scores["recognised"],
    }
    classifier.real_cache[key] = row
    return dict(row)


def generative_row(
    model: Any, data: Any, classifier: Any, *, n: int, k: int, splits: int, seed: int, batch_size: int,
) -> tuple[dict[str, Any], Tensor, Tensor | None]:
    """Quality of n samples of ``model`` against the test split's features.

    Returns (row, samples (n, C, H, W), labels (n,) or None). class_accuracy (conditional models
    only, else NaN) is the fraction of samples the classifier assigns to the requested class;
    ``recognised`` the fraction it assigns to one class with probability at least
    ``RECOGNISED_CONFIDENCE`` (for conditional models: to the requested class): what a person sees
    as "a digit" rather than a blot, whatever the Frechet distance says about blur. In a label-free
    feature space (``embed`` gives no probabilities) the three label scores are NaN.
    """
    samples, labels = draw_samples(model, n, seed=seed, batch_size=batch_size)
    feats, probs = classifier.embed(samples, batch_size=batch_size)
    test_f, _ = real_features(classifier, data, "test", None, seed, batch_size)
    if not torch.isfinite(feats).all():
        raise ValueError(f"{model.name}: samples gave non-finite classifier features")
    dev = next(classifier.parameters()).device
    precision, recall = precision_recall(test_f.to(dev), feats.to(dev), k)
    scores = _label_scores(probs, splits, seed)
    class_acc = math.nan
    if probs is not None and labels is not None:
        class_acc = float((probs.argmax(1) == labels).float().mean())
        confident = (probs.max(1).values >= RECOGNISED_CONFIDENCE) & (probs.argmax(1) == labels.to(probs.device))
        scores["recognised"] = float(confident.float().mean())
    row = {
        "model": model.name,
        "n_samples": n,
        "fid": frechet_distance_features(feats, test_f),
        "precision": precision,
        "recall": recall,
        "inception_score": scores["inception_score"],
        "inception_score_std": scores["inception_score_std"],
        "class_accuracy": class_acc,
        "recognised": scores["recognised"],
    }
    return row, samples, labels


def samples_figure(name: str, samples: Tensor, labels: Tensor | None, per_row: int = 10, rows: int = 4) -> Figure:
    """A grid of samples; for conditional models one row per requested class."""
    if labels is not None:
        classes = torch.unique(labels).tolist()
        grid_rows = [samples[labels == c][:per_row] for c in classes]
        return grid_figure(grid_rows, [f"class {c}" for c in classes], f"{name}: samples by requested class")
    grid_rows = [samples[i * per_row : (i + 1) * per_row] for i in range(rows) if i * per_row < samples.shape[0]]
    return grid_figure(grid_rows, [""] * len(grid_rows), f"{name}: samples")
