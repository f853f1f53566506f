"""The one image-grid builder: torchvision's ``make_grid`` for the pixels, a matplotlib figure for the labels.

Pictures a person reads: every image upscaled (nearest neighbour, at least 2x), rows labelled on the left
("original" / "reconstruction", "class 3"), unconditional samples as a 10 x 10 grid. torchvision and
matplotlib are imported inside the functions (importing them costs seconds; the CLI's listing commands and
the evaluation package import this module without drawing anything).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

PADDING = 2
# Displayed size per image pixel: 28-pixel digits become 56 screen pixels.
SCALE = 2
DPI = 100
SAMPLES_PER_ROW = 10


def image_grid(images: Tensor, nrow: int | None = None, *, scale: int = 1, padding: int = PADDING) -> Tensor:
    """(N, C, H, W) in [0, 1] -> one (C, H', W') grid image, ``nrow`` images per row, white padding,
    each image upscaled ``scale`` times (nearest neighbour: pixels stay sharp)."""
    from torchvision.utils import make_grid

    x = images.detach().float().cpu().clamp(0, 1)
    if scale > 1:
        x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    nrow = nrow or max(1, int(math.sqrt(x.shape[0])))
    return make_grid(x, nrow=nrow, padding=padding * scale, pad_value=1.0)


def save_grid(images: Tensor, path: str | Path, nrow: int | None = None, *, scale: int = 1) -> Path:
    """Save (N, C, H, W) images in [0, 1] as one unlabelled PNG grid (``genlib sample``'s output)."""
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(image_grid(images, nrow, scale=scale), path)
    return path


def grid_figure(rows: Sequence[Tensor], row_labels: Sequence[str], title: str = "", *, scale: int = SCALE) -> Any:
    """One figure: each (N_i, C, H, W) tensor of ``rows`` is a row of images, labelled on the left.

    Shorter rows are padded with blank cells. The figure is sized so each image pixel covers ``scale``
    screen pixels at the saved DPI. Returns a matplotlib Figure (not attached to pyplot).
    """
    from matplotlib.figure import Figure

    if len(rows) != len(row_labels):
        raise ValueError(f"{len(rows)} rows but {len(row_labels)} labels")
    ncol = max(int(r.shape[0]) for r in rows)
    c, h, w = (int(d) for d in rows[0].shape[1:])
    cells = []
    for r in rows:
        r = r.detach().float().cpu()
        blank = torch.ones(ncol - r.shape[0], c, h, w)
        cells.append(torch.cat([r, blank]) if len(blank) else r)
    grid = image_grid(torch.cat(cells), nrow=ncol, scale=scale)
    pixels = grid.permute(1, 2, 0).numpy()
    height, width = pixels.shape[:2]
    label_width = 1.3 if any(row_labels) else 0.1
    fig = Figure(figsize=(width / DPI + label_width, height / DPI + (0.45 if title else 0.1)), dpi=DPI,
                 layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(pixels[..., 0] if c == 1 else pixels, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    cell = (h + PADDING) * scale
    ax.set_yticks([PADDING * scale + i * cell + h * scale / 2 for i in range(len(rows))], list(row_labels))
    ax.set_xticks([])
    ax.tick_params(length=0, labelsize=10)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def reconstructions_figure(originals: Tensor, reconstructions: Tensor, title: str = "",
                           noisy: Tensor | None = None, per_row: int = 8) -> Any:
    """Originals (N, C, H, W) in rows labelled "original", each with its reconstructions in the row below
    (and the corrupted inputs between them for a denoising model), ``per_row`` images per row: narrow
    enough for MLflow's artifact preview to show it at full size."""
    rows, labels = [], []
    for start in range(0, originals.shape[0], per_row):
        part = slice(start, start + per_row)
        rows.append(originals[part])
        labels.append("original")
        if noisy is not None:
            rows.append(noisy[part])
            labels.append("noisy input")
        rows.append(reconstructions[part])
        labels.append("reconstruction")
    return grid_figure(rows, labels, title)


def samples_figure(samples: Tensor, labels: Tensor | None = None, title: str = "",
                   per_row: int = SAMPLES_PER_ROW) -> Any:
    """Samples (N, C, H, W): ``per_row`` per row (100 samples: a 10 x 10 grid), or for conditional samples
    with ``labels`` (N,) one row per requested class, labelled "class k"."""
    if labels is not None:
        classes = torch.unique(labels.cpu()).tolist()
        rows = [samples[labels.cpu() == k][:per_row] for k in classes]
        return grid_figure(rows, [f"class {k}" for k in classes], title)
    rows = [samples[i : i + per_row] for i in range(0, samples.shape[0], per_row)]
    return grid_figure(rows, [""] * len(rows), title)


def class_labels(num_classes: int, per_class: int = SAMPLES_PER_ROW) -> Tensor:
    """(num_classes * per_class,) labels 0,0,...,1,1,...: one row per class for :func:`samples_figure`."""
    return torch.arange(num_classes).repeat_interleave(per_class)


def model_figures(model: Any, images: Tensor | None = None, labels: Tensor | None = None, *, seed: int = 0,
                  n_reconstructions: int = 16) -> dict[str, Any]:
    """What a model can show, as figures by file stem: ``reconstructions`` (the first ``n_reconstructions``
    of ``images`` (N, C, H, W), with their ``labels`` (N,) for conditional models) and ``samples`` (10 x 10,
    or one row of 10 per class for conditional models; the noise drawn from ``seed`` on the CPU, so every
    epoch's grid shows the same draws). The model's train/eval mode is restored."""
    figures: dict[str, Any] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        if model.reconstructs and images is not None:
            x = images[:n_reconstructions].to(model.device)
            y = labels[:n_reconstructions].to(model.device) if labels is not None else None
            figures["reconstructions"] = reconstructions_figure(x, model.reconstruct(x, y),
                                                                f"{model.name}: held-out reconstructions")
        if model.generates:
            gen = torch.Generator().manual_seed(seed)
            if model.conditional:
                wanted = class_labels(int(model.config.num_classes))
                samples = model.sample(len(wanted), labels=wanted.to(model.device), generator=gen)
                figures["samples"] = samples_figure(samples, wanted, f"{model.name}: samples by requested class")
            else:
                samples = model.sample(SAMPLES_PER_ROW**2, generator=gen)
                figures["samples"] = samples_figure(samples, None, f"{model.name}: samples")
    model.train(was_training)
    return figures


def save_model_figures(model: Any, folder: str | Path, images: Tensor | None = None, labels: Tensor | None = None,
                       *, seed: int = 0, prefix: str = "") -> list[Path]:
    """:func:`model_figures` written as ``<folder>/<prefix><name>.png``. Returns the paths."""
    return [save_figure(fig, Path(folder) / f"{prefix}{name}.png")
            for name, fig in model_figures(model, images, labels, seed=seed).items()]


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write a figure of this module as a PNG at the DPI it was sized for."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path
