"""Small helpers shared by the evaluation modules: scoped seeding, batching, mean/std formatting, image figures.

Tables are rendered by the project's one renderer, ``genlib.tables.format_table``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

# Model name of the real train-vs-test reference row of the "generative_quality" table.
REAL_FLOOR_NAME = "real (train vs test)"


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNGs (CPU and ``device``) inside the block and restore them afterwards.

    Used where a model draws from the global RNG (VAE importance samples, dropout, init), so that
    results are reproducible without leaving the caller's RNG state changed.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def cpu_generator(seed: int) -> torch.Generator:
    # Noise drawn on CPU then moved: the same seed gives the same numbers on CPU and CUDA.
    return torch.Generator().manual_seed(int(seed))


@torch.no_grad()
def batched(fn: Callable[..., Tensor], *tensors: Tensor | None, device: torch.device, batch_size: int) -> Tensor:
    """Apply ``fn`` to aligned minibatches (moved to ``device``) and concatenate the results on CPU.

    Args: tensors (N, ...) each, or None (passed through as None). Returns fn's outputs stacked along dim 0.
    """
    n = next(t for t in tensors if t is not None).shape[0]
    outs = []
    for start in range(0, n, batch_size):
        args = [None if t is None else t[start : start + batch_size].to(device, non_blocking=True) for t in tensors]
        outs.append(fn(*args).detach().float().cpu())
    return torch.cat(outs, 0)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    """'25.81 +- 0.50' (or just the mean when std is NaN)."""
    if math.isnan(mean):
        return "n/a"
    if math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def grid_figure(rows: Sequence[Tensor], row_titles: Sequence[str], title: str) -> Figure:
    """One figure with each (N, C, H, W) tensor of ``rows`` shown as a row of images, titled on the left
    (genlib.images' builder: make_grid, 2x upscaled, labelled rows)."""
    from genlib.images import grid_figure as build

    return build(rows, row_titles, title)


def with_train(data: Any, x_train: Tensor, y_train: Tensor, x_val: Tensor | None = None, y_val: Tensor | None = None) -> Any:
    """A copy of a DataSplits-like dataclass with other train (and optionally val) tensors."""
    fields: dict[str, Any] = {"x_train": x_train, "y_train": y_train}
    if x_val is not None:
        fields.update(x_val=x_val, y_val=y_val)
    names = {f.name for f in dataclasses.fields(data)}
    if "digest" in names:
        from genlib.data.splits import compute_digest

        arrays = [fields.get(k, getattr(data, k)) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")]
        fields["digest"] = compute_digest(*arrays)
    return dataclasses.replace(data, **fields)
