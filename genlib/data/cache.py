"""On-disk cache of prepared splits: one ``.pt`` file per (source files identity, split parameters)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from genlib.data.splits import SPLIT_NAMES, DataSplits, compute_digest

logger = logging.getLogger(__name__)

# Bump when the preparation of any data set changes, so that stale cache files are not reused.
CACHE_FORMAT = 2  # 2: .npz layouts detected (channels last), PNG folders in colour
_ARRAY_KEYS = tuple(f"{k}_{w}" for w in SPLIT_NAMES for k in ("x", "y"))


def default_cache_dir() -> Path:
    """``$GENLIB_CACHE_DIR`` or ``~/.cache/genlib/prepared``."""
    env = os.environ.get("GENLIB_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genlib" / "prepared"


def cache_key(kind: str, files: Iterable[Path], params: Mapping[str, Any]) -> str:
    """sha256 hex over the loader kind, each source file's (absolute path, size, mtime) and the split params."""
    identity = []
    for f in files:
        st = Path(f).stat()
        identity.append([str(Path(f).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"format": CACHE_FORMAT, "kind": kind, "files": identity, "params": dict(params)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_path(cache_dir: Path, label: str, key: str) -> Path:
    """File name readable by people (data set label) and unique by key."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_.")[-40:] or "data"
    return cache_dir / f"{safe}-{key[:24]}.pt"


def load_cached(path: Path, key: str, name: str) -> DataSplits | None:
    """The cached splits at ``path``, or None when absent, unreadable, or for another key (then rebuilt)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("key") != key:
            raise ValueError("key mismatch")
        arrays = {k: payload[k] for k in _ARRAY_KEYS}
        digest = compute_digest(*(arrays[k] for k in _ARRAY_KEYS))
        # Re-hashing (cheap next to loading) catches silently damaged tensor data, not just unreadable files.
        if digest != payload["digest"]:
            raise ValueError("content does not match the stored digest")
        splits = DataSplits(
            name=name,
            **arrays,
            num_classes=int(payload["num_classes"]),
            digest=str(payload["digest"]),
            source=str(payload["source"]),
        )
    except Exception as err:  # noqa: BLE001 - any corrupt cache file is just rebuilt
        logger.warning("ignoring unreadable cache file %s (%s: %s); rebuilding", path, type(err).__name__, err)
        return None
    logger.info("loaded %s from cache %s", name, path)
    return splits


def save_cached(path: Path, key: str, splits: DataSplits) -> None:
    """Write the splits atomically (temp file + os.replace); failures only log a warning."""
    payload: dict[str, Any] = {k: getattr(splits, k).detach().to("cpu").contiguous() for k in _ARRAY_KEYS}
    payload.update(key=key, num_classes=splits.num_classes, digest=splits.digest, source=splits.source)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is as shareable as the data it holds
        os.replace(tmp, path)
        tmp = None
        logger.info("cached %s at %s", splits.name, path)
    except OSError as err:
        logger.warning("could not write cache file %s (%s); continuing without cache", path, err)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
