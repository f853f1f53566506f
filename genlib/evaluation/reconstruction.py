"""Reconstruction error on the test split (overall and per class) and the denoising gain of a ``dae``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from genlib.evaluation._utils import batched, cpu_generator, grid_figure

logger = logging.getLogger(__name__)

ReconstructFn = Callable[[Tensor, Tensor], Tensor]


def reconstruction_errors(recon: Tensor, x: Tensor) -> dict[str, Tensor]:
    """Per-image errors of reconstructions on the [0, 1] scale.

    Args:
        recon: (N, C, H, W) reconstructions in [0, 1].
        x: (N, C, H, W) targets in [0, 1].
    Returns:
        ``sq_err`` (N,): squared error summed over pixels (Hinton & Salakhutdinov 2006);
        ``mse`` (N,): the same divided by the pixel count;
        ``bce`` (N,): binary cross-entropy summed over pixels, in nats, the targets' grey levels as
        probabilities (0 for a perfect reconstruction of binary images; torch clamps log 0 at -100).
    """
    recon = recon.double().flatten(1)
    x = x.double().flatten(1)
    sq_err = (recon - x).pow(2).sum(1)
    bce = F.binary_cross_entropy(recon.clamp(0, 1), x, reduction="none").sum(1)
    return {"sq_err": sq_err, "mse": sq_err / x.shape[1], "bce": bce}


def reconstruct_all(fn: ReconstructFn, x: Tensor, y: Tensor, *, device: torch.device, batch_size: int = 512) -> Tensor:
    """Reconstructions of all of x (N, C, H, W) with labels y (N,), batched on ``device``; returned on CPU."""
    return batched(lambda xb, yb: fn(xb, yb).float(), x, y, device=device, batch_size=batch_size)


def reconstruction_tables(name: str, recon: Tensor, x: Tensor, y: Tensor) -> tuple[dict[str, Any], pd.DataFrame]:
    """Summary row and per-class table of reconstruction errors.

    Args:
        name: the model's name (the "model" column).
        recon, x: (N, C, H, W) in [0, 1]; y: (N,) labels.
    Returns:
        (row, per_class): row has model, n_images, test_mse, test_sq_err_per_image, test_bce;
        per_class has one row per label with the same error columns.
    """
    err = reconstruction_errors(recon, x)
    row = {
        "model": name,
        "n_images": int(x.shape[0]),
        "test_mse": float(err["mse"].mean()),
        "test_sq_err_per_image": float(err["sq_err"].mean()),
        "test_bce": float(err["bce"].mean()),
    }
    frame = pd.DataFrame({"label": y.cpu().numpy(), **{k: v.cpu().numpy() for k, v in err.items()}})
    per_class = frame.groupby("label").agg(
        n_images=("sq_err", "size"), test_mse=("mse", "mean"), test_sq_err_per_image=("sq_err", "mean"),
        test_bce=("bce", "mean"),
    ).reset_index()
    per_class.insert(0, "model", name)
    return row, per_class


def figure_indices(y: Tensor, n: int) -> Tensor:
    """Indices of the first test image of each class in turn (one per class, then repeats), n in all."""
    picked: list[int] = []
    labels = y.cpu()
    classes = torch.unique(labels).tolist()
    per_class = {c: (labels == c).nonzero().flatten().tolist() for c in classes}
    rank = 0
    while len(picked) < min(n, len(labels)):
        for c in classes:
            if rank < len(per_class[c]) and len(picked) < n:
                picked.append(per_class[c][rank])
        rank += 1
    return torch.tensor(picked, dtype=torch.long)


def reconstruction_figure(name: str, x: Tensor, recon: Tensor, noisy: Tensor | None = None) -> Figure:
    """Originals above their reconstructions (and the noisy inputs between them for a ``dae``)."""
    rows, titles = [x], ["original"]
    if noisy is not None:
        rows.append(noisy)
        titles.append("noisy input")
    rows.append(recon)
    titles.append("reconstruction")
    return grid_figure(rows, titles, f"{name}: test reconstructions")


def denoising_row(
    name: str, fn: ReconstructFn, x: Tensor, y: Tensor, noise: str, level: float, *, device: torch.device,
    batch_size: int, seed: int, clean_sq_err: float,
) -> tuple[dict[str, Any], Tensor]:
    """Denoising gain: squared error per image of the noisy input itself vs of its reconstruction, both against x.

    Args:
        fn: the model's reconstruct(x, y).
        x: (N, C, H, W) clean test images; y (N,).
        noise, level: the corruption (genlib.models.autoencoders.add_noise).
        clean_sq_err: the model's error on clean inputs, shown alongside.
    Returns:
        (row, noisy): the table row and the noisy inputs (N, C, H, W).
    """
    from genlib.models.autoencoders import add_noise

    noisy = add_noise(x.cpu(), noise, level, cpu_generator(seed))
    denoised = reconstruct_all(fn, noisy, y, device=device, batch_size=batch_size)
    noisy_err = float(reconstruction_errors(noisy, x)["sq_err"].mean())
    denoised_err = float(reconstruction_errors(denoised, x)["sq_err"].mean())
    row = {
        "model": name,
        "noise": noise,
        "noise_level": float(level),
        "noisy_input_sq_err_per_image": noisy_err,
        "denoised_sq_err_per_image": denoised_err,
        "clean_input_sq_err_per_image": clean_sq_err,
        "denoising_gain": noisy_err - denoised_err,
    }
    return row, noisy
