"""Image grids written with torchvision's ``save_image``."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image


def image_grid(images: Tensor, nrow: int | None = None) -> Tensor:
    """(N, C, H, W) in [0, 1] -> one (C, H', W') grid image."""
    nrow = nrow or max(1, int(math.sqrt(images.shape[0])))
    return make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)


def save_grid(images: Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save (N, C, H, W) images in [0, 1] as one PNG grid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(image_grid(images, nrow), path)
    return path


def reconstruction_grid(originals: Tensor, reconstructions: Tensor) -> Tensor:
    """Originals in the top row(s), their reconstructions below: (2N, C, H, W) laid out N per row."""
    return torch.cat([originals.detach().cpu().float(), reconstructions.detach().cpu().float()], 0)
