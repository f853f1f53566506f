"""Registry of named data sets: each name maps to a resolver that finds its files and plans how to build splits."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: listing the data sets must not import torch
    from genlib.data.splits import DataSplits

from genlib.errors import UnknownNameError

DEFAULT_VAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.2


def default_data_root() -> Path:
    """``$GENLIB_DATA_ROOT`` or ``~/.cache/genlib/data`` (torchvision layout: ``<root>/MNIST/raw/...``)."""
    env = os.environ.get("GENLIB_DATA_ROOT")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genlib" / "data"


@dataclass(frozen=True)
class Request:
    """What ``load_dataset`` was asked for, after validation."""

    name: str
    root: Path
    seed: int = 0
    val_fraction: float = DEFAULT_VAL_FRACTION
    test_fraction: float = DEFAULT_TEST_FRACTION
    download: bool = False


@dataclass(frozen=True)
class Plan:
    """Where a data set comes from and how to build it; ``files`` and ``params`` form the cache key."""

    kind: str
    source: str
    build: Callable[[], DataSplits]  # named after the request, without a source (load_dataset adds the plan's)
    files: tuple[Path, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetEntry:
    """A registered data set: its resolver and an offline probe ``root -> (available, location)``."""

    name: str
    description: str
    resolve: Callable[[Request], Plan]
    probe: Callable[[Path], tuple[bool, str]]


_DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(
    name: str, *, description: str, probe: Callable[[Path], tuple[bool, str]]
) -> Callable[[Callable[[Request], Plan]], Callable[[Request], Plan]]:
    """Decorator registering a resolver ``Request -> Plan`` under ``name``; refuses duplicates."""

    def wrap(resolve: Callable[[Request], Plan]) -> Callable[[Request], Plan]:
        if name in _DATASETS:
            raise ValueError(f"data set name {name!r} is already registered")
        _DATASETS[name] = DatasetEntry(name, description, resolve, probe)
        return resolve

    return wrap


def dataset_names() -> list[str]:
    """Registered data set names, sorted."""
    return sorted(_DATASETS)


def registered() -> list[DatasetEntry]:
    """Registered entries, sorted by name."""
    return [_DATASETS[n] for n in dataset_names()]


def find_entry(name: str) -> DatasetEntry | None:
    """The entry for ``name`` (case-insensitive), or None."""
    return _DATASETS.get(name.lower())


def unknown_name_error(name: str) -> UnknownNameError:
    return UnknownNameError(
        f"unknown data set {name!r} (and no such file or folder); valid names: {', '.join(dataset_names())}, "
        "or a path to a folder of IDX files, an .npz file, or a folder of PNGs (one subfolder per class, or unlabelled)"
    )
