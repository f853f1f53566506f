"""Safe reader for the classic ``mnist.pkl.gz`` (deeplearning.net format) through a restricted unpickler."""

from __future__ import annotations

import codecs
import gzip
import logging
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from genlib.errors import DataError

logger = logging.getLogger(__name__)


def _latin1_encode(obj: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2, limited to latin-1 (no other codec lookups)."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"codec {encoding!r} not allowed")
    return codecs.encode(obj, "latin1", errors)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object: exactly what pickled numpy arrays and dtypes refer to, nothing else.

    Objects are taken from numpy itself rather than imported by the pickled module name, so an
    old ``numpy.core`` reference neither triggers numpy 2's deprecation shim nor imports anything.
    """
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        # Protocol-5 pickles of arrays written by numpy >= 1.16.
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy globals listed in ``_allowed_globals``."""

    def __init__(self, file, path: Path) -> None:
        # Python-2 pickles store numpy's raw buffers as str; latin1 maps them back to bytes 1:1.
        super().__init__(file, encoding="latin1")
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._path}: refusing to unpickle global {module}.{name} (only numpy arrays are allowed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._path}: refusing to unpickle a persistent id")


def _check_pair(path: Path, index: int, pair: Any) -> tuple[np.ndarray, np.ndarray]:
    names = ("train", "val", "test")
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise DataError(f"{path}: {names[index]} entry is not an (x, y) pair")
    x, y = pair
    if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
        raise DataError(f"{path}: {names[index]} entry does not hold numpy arrays")
    if x.dtype.kind not in "fu" or x.ndim != 2:
        raise DataError(f"{path}: {names[index]} x has dtype {x.dtype} shape {x.shape}, expected float (N, H*W)")
    if y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{path}: {names[index]} y has dtype {y.dtype} shape {y.shape}, expected int ({len(x)},)")
    return x, y


def read_mnist_pickle(path: str | Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Read a gzipped ``((x, y), (x, y), (x, y))`` pickle = train/val/test without executing code.

    Shapes: x float32 (N, 784) in [0, 1], y int64 (N,) as stored. Any global other than numpy's
    array/dtype reconstructors (e.g. ``os.system``) raises DataError naming the file.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, path).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as err:
        raise DataError(f"{path}: not a readable gzipped pickle ({type(err).__name__}: {err})") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 3):
        raise DataError(f"{path}: expected a tuple of 3 (x, y) pairs (train, val, test), got {type(obj).__name__}")
    return tuple(_check_pair(path, i, pair) for i, pair in enumerate(obj))
