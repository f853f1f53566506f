"""The ``DataSplits`` container, its content digest, seeded splitting and class-balanced subsets."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genlib.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


def compute_digest(*arrays: Tensor) -> str:
    """sha256 hex over each tensor's dtype, shape and raw bytes, in order; device-independent."""
    h = hashlib.sha256()
    for t in arrays:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}|".encode())
        # Reinterpreting as bytes avoids a numpy round trip (and works for dtypes numpy lacks).
        h.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True, eq=False, repr=False)
class DataSplits:
    """Train/val/test tensors of one data set: x float32 (N, C, H, W) in [0, 1], y int64 (N,)."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    digest: str
    source: str

    def __post_init__(self) -> None:
        shape = tuple(self.x_train.shape[1:])
        for which in SPLIT_NAMES:
            x, y = self.split(which)
            if x.dtype != torch.float32 or x.dim() != 4 or tuple(x.shape[1:]) != shape:
                raise DataError(f"{self.name}: x_{which} must be float32 (N, *{shape}), got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.dim() != 1 or len(y) != len(x):
                raise DataError(f"{self.name}: y_{which} must be int64 ({len(x)},), got {y.dtype} {tuple(y.shape)}")

    @property
    def labelled(self) -> bool:
        """True when the images carry class labels (2 classes or more); see :func:`has_labels`."""
        return has_labels(self)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    @property
    def sizes(self) -> dict[str, int]:
        """Number of examples per split, e.g. {"train": 50000, "val": 10000, "test": 10000}."""
        return {which: len(self.split(which)[1]) for which in SPLIT_NAMES}

    def split(self, which: str) -> tuple[Tensor, Tensor]:
        """(x, y) of split ``which`` in {"train", "val", "test"}: x (N, C, H, W), y (N,)."""
        if which not in SPLIT_NAMES:
            raise ConfigError(f"unknown split {which!r}; valid splits: {', '.join(SPLIT_NAMES)}")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def subset(
        self, n_train: int | None = None, n_val: int | None = None, n_test: int | None = None, seed: int = 0
    ) -> DataSplits:
        """Deterministic random subset of each split (None keeps a split whole); new digest.

        Each split draws from its own generator (seeded from ``seed`` and the split), so changing
        ``n_train`` does not change which val/test examples are picked. Kept examples stay in order.
        """
        fields: dict[str, Tensor] = {}
        for offset, (which, n) in enumerate(zip(SPLIT_NAMES, (n_train, n_val, n_test))):
            x, y = self.split(which)
            if n is not None:
                if not 0 <= n <= len(y):
                    raise ConfigError(f"n_{which} must be between 0 and {len(y)} (size of {which}), got {n}")
                g = torch.Generator().manual_seed(int(seed) * 3 + offset)
                idx = torch.randperm(len(y), generator=g)[:n].sort().values.to(y.device)
                x, y = x[idx], y[idx]
            fields[f"x_{which}"], fields[f"y_{which}"] = x, y
        digest = compute_digest(*(fields[f"{k}_{w}"] for w in SPLIT_NAMES for k in ("x", "y")))
        sizes = "/".join(str(len(fields[f"y_{w}"])) for w in SPLIT_NAMES)
        return dataclasses.replace(self, **fields, digest=digest, source=f"{self.source} (subset {sizes}, seed {seed})")

    def to(self, device: torch.device | str) -> DataSplits:
        """The same splits with every tensor on ``device`` (digest unchanged: same content)."""
        moved = {f"{k}_{w}": getattr(self, f"{k}_{w}").to(device) for w in SPLIT_NAMES for k in ("x", "y")}
        return dataclasses.replace(self, **moved)

    def __eq__(self, other: object) -> bool:
        # Tensor fields make the generated __eq__ ambiguous; the digest already identifies the content.
        if not isinstance(other, DataSplits):
            return NotImplemented
        return self.digest == other.digest and self.num_classes == other.num_classes

    def __hash__(self) -> int:
        return hash((self.digest, self.num_classes))

    def __repr__(self) -> str:
        sizes = "/".join(str(n) for n in self.sizes.values())
        return (
            f"DataSplits(name={self.name!r}, train/val/test={sizes}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes}, digest={self.digest[:12]}…, source={self.source!r})"
        )


def has_labels(data: Any) -> bool:
    """Whether ``data`` (a DataSplits, or anything with ``num_classes``: a flow's DatasetRef) has class labels.

    Unlabelled images (an .npz with only ``x``, a folder of PNGs alone, ``shapes-unlabelled``) are loaded as
    one class, so fewer than 2 classes means no labels: conditional models and label-needing evaluations
    do not apply.
    """
    return int(getattr(data, "num_classes", 0)) >= 2


UNLABELLED_REASON = "the data set has no class labels"


def make_splits(
    name: str,
    x_train: Tensor,
    y_train: Tensor,
    x_val: Tensor,
    y_val: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    num_classes: int,
    source: str,
) -> DataSplits:
    """Build a DataSplits and compute its digest."""
    arrays = (x_train, y_train, x_val, y_val, x_test, y_test)
    return DataSplits(name, *arrays, num_classes=num_classes, digest=compute_digest(*arrays), source=source)


def validate_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise ConfigError naming the field unless both fractions are in [0, 1) and sum below 1."""
    for field, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"{field} must be in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
        )


def seeded_split_indices(n: int, seed: int, n_test: int, n_val: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sorted (train, val, test) index tensors of a seeded random permutation of range(n)."""
    if n_test + n_val >= n:
        raise DataError(f"cannot split {n} examples into {n_val} val + {n_test} test and a non-empty train set")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    # Sorting keeps each split in file order, so a split is a set, independent of permutation order.
    return train.sort().values, val.sort().values, test.sort().values


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(n_test, n_val): test_fraction of n, then val_fraction of the rest, rounded."""
    n_test = int(round(n * test_fraction))
    n_val = int(round((n - n_test) * val_fraction))
    return n_test, n_val


def balanced_subset(y: Tensor, per_class_or_total: int, seed: int) -> Tensor:
    """Sorted int64 indices of a class-balanced random subset of ``y`` (N,) with ``per_class_or_total`` items in all.

    Each of the C classes present in ``y`` gets total // C items; the first total % C classes
    (in label order) get one more. The same seed gives the same indices. Raises ConfigError when a
    class has too few examples.
    """
    total = int(per_class_or_total)
    if y.dim() != 1:
        raise ConfigError(f"balanced_subset needs 1-D labels, got shape {tuple(y.shape)}")
    if total <= 0:
        raise ConfigError(f"balanced_subset size must be positive, got {total}")
    labels = y.detach().to("cpu")
    classes, counts = torch.unique(labels, return_counts=True)
    k, extra = divmod(total, len(classes))
    g = torch.Generator().manual_seed(int(seed))
    # One permutation for all classes: a stable sort by label keeps it random within each class.
    perm = torch.randperm(len(labels), generator=g)
    order = perm[torch.sort(labels[perm], stable=True).indices]
    starts = torch.cumsum(counts, 0) - counts
    picked = []
    for i, (c, count, start) in enumerate(zip(classes.tolist(), counts.tolist(), starts.tolist())):
        want = k + (1 if i < extra else 0)
        if want > count:
            raise ConfigError(f"balanced_subset of {total} needs {want} examples of class {c}, only {count} available")
        picked.append(order[start : start + want])
    return torch.cat(picked).sort().values.to(y.device)
