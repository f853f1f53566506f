"""Whole-array conversions from stored formats to tensors, and the seeded splitting of a single pool."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genlib.data.idx import read_idx
from genlib.data.registry import DEFAULT_VAL_FRACTION, Request
from genlib.data.splits import DataSplits, make_splits, seeded_split_indices, split_counts
from genlib.errors import DataError

# MNIST convention: the official 60k training images become 50k train + 10k val.
_OFFICIAL_TRAIN_SIZE = 60_000
_OFFICIAL_VAL_SIZE = 10_000


CHANNELS = (1, 3)  # greyscale or RGB


def channels_first(x: np.ndarray, where: str | Path) -> np.ndarray:
    """Images as (N, C, H, W) from (N, H, W), (N, H*W) square, (N, C, H, W) or (N, H, W, C), C in {1, 3}.

    The layout of a 4-D array is told by which axis has 1 or 3 entries; when both axis 1 and axis 3 could be
    channels (e.g. (N, 3, 32, 3)) or neither is, DataError names the shape.
    """
    x = np.asarray(x)
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise DataError(f"{where}: flat images of {x.shape[1]} pixels are not square; give x as (N, H, W)")
        return x.reshape(len(x), 1, side, side)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise DataError(f"{where}: images have shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) "
                        "with C 1 (greyscale) or 3 (RGB)")
    first, last = x.shape[1] in CHANNELS, x.shape[3] in CHANNELS
    if first and last:
        raise DataError(f"{where}: images of shape {x.shape} are ambiguous: (N, C, H, W) or (N, H, W, C)? "
                        "save them with at least 4 pixels a side, or greyscale as (N, H, W)")
    if last:
        return x.transpose(0, 3, 1, 2)
    if not first:
        raise DataError(f"{where}: images of shape {x.shape} have no channel axis of 1 (greyscale) or 3 (RGB); "
                        "expected (N, H, W), (N, H, W, C) or (N, C, H, W)")
    return x


def images_to_tensor(x: np.ndarray, where: str | Path) -> Tensor:
    """Images as float32 (N, C, H, W) in [0, 1], the layout found by :func:`channels_first`.

    uint8 (and other integer arrays within 0..255) are divided by 255; floats must already lie in [0, 1].
    """
    x = channels_first(x, where)
    if x.dtype == np.bool_:
        return torch.from_numpy(x.astype(np.float32))
    if x.dtype.kind in "iu":
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{where}: integer images must lie in 0..255, got {x.min()}..{x.max()}")
        t = torch.from_numpy(np.ascontiguousarray(x))
        return t.to(torch.float32).div_(255.0)
    if x.dtype.kind == "f":
        t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32)
        if t.numel() and not (torch.isfinite(t).all() and t.min() >= 0.0 and t.max() <= 1.0):
            raise DataError(f"{where}: float images must lie in [0, 1], got {t.min().item()}..{t.max().item()}")
        return t
    raise DataError(f"{where}: images have unsupported dtype {x.dtype}; expected uint8 or float in [0, 1]")


def labels_to_tensor(y: np.ndarray, n: int, where: str | Path) -> Tensor:
    """Labels as int64 (N,); must be non-negative integers, one per image."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{where}: labels have shape {y.shape}, expected ({n},) to match the images")
    if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(f"{where}: labels have dtype {y.dtype}, expected integers")
    if y.size and y.min() < 0:
        raise DataError(f"{where}: labels must be non-negative, got {y.min()}")
    return torch.from_numpy(y.astype(np.int64))


def num_classes_of(*ys: Tensor) -> int:
    """max label + 1 over all given label tensors (at least 1)."""
    return max([int(y.max()) + 1 for y in ys if y.numel()] or [1])


def split_pool(x: Tensor, y: Tensor, req: Request, num_classes: int | None = None) -> DataSplits:
    """Seeded train/val/test split of one pool: test_fraction of it, then val_fraction of the rest.

    The returned splits carry the request's name and no source yet (``load_dataset`` adds the plan's).
    """
    n_test, n_val = split_counts(len(y), req.val_fraction, req.test_fraction)
    train, val, test = seeded_split_indices(len(y), req.seed, n_test, n_val)
    return make_splits(req.name, x[train], y[train], x[val], y[val], x[test], y[test],
                       num_classes=num_classes if num_classes else num_classes_of(y), source="")


def official_val_size(n_train: int, val_fraction: float) -> int:
    """Validation size carved from an official train set: 10k of 60k with the default fraction, else the fraction."""
    if n_train == _OFFICIAL_TRAIN_SIZE and val_fraction == DEFAULT_VAL_FRACTION:
        return _OFFICIAL_VAL_SIZE
    return int(round(n_train * val_fraction))


def split_official(
    x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, req: Request, num_classes: int | None = None
) -> DataSplits:
    """Official train/test kept; val carved from train by seed (``official_val_size``); test_fraction unused."""
    n_val = official_val_size(len(y_train), req.val_fraction)
    train, val, _ = seeded_split_indices(len(y_train), req.seed, 0, n_val)
    return make_splits(req.name, x_train[train], y_train[train], x_train[val], y_train[val], x_test, y_test,
                       num_classes=num_classes if num_classes else num_classes_of(y_train, y_test), source="")


def read_idx_pair(images: Path, labels: Path) -> tuple[Tensor, Tensor]:
    """x float32 (N, 1, H, W) and y int64 (N,) from an images IDX file and a labels IDX file."""
    x = read_idx(images, expected_ndim=3)
    y = read_idx(labels, expected_ndim=1)
    if len(x) != len(y):
        raise DataError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
    return images_to_tensor(x, images), labels_to_tensor(y, len(x), labels)
