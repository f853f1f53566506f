"""Reader and writer for the IDX format of the MNIST family (LeCun's ``*-idx3-ubyte`` files), optionally gzipped."""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from genlib.errors import DataError

logger = logging.getLogger(__name__)

# IDX type code -> big-endian numpy dtype (the format stores multi-byte values big-endian).
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_NAMES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """Whole file content, gunzipped when it starts with the gzip magic (whatever its suffix)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise DataError(f"{path}: cannot read IDX file ({err.strerror or err})") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip data ({err})") from None


def _expected_magic(expected_ndim: int | None) -> str:
    if expected_ndim is None:
        return "expected 0x0000TTNN (TT a type code 08/09/0B/0C/0D/0E, NN the number of dims)"
    return f"expected 0x{0x0800 + expected_ndim:08X} (IDX uint8, {expected_ndim} dims)"


def read_idx(path: str | Path, expected_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (plain or gzipped) into a native-endian numpy array.

    Returns an array of the header's shape, e.g. uint8 (N, 28, 28) for images, (N,) for labels.
    Raises DataError naming the file for a bad magic number, a dims count other than
    ``expected_ndim`` (when given), or a size that does not match the header.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: file too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or code not in _CODE_TO_DTYPE or ndim == 0:
        raise DataError(f"{path}: bad magic number 0x{magic:08X}, {_expected_magic(expected_ndim)}")
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(
            f"{path}: IDX file has {ndim} dims (magic 0x{magic:08X}), {_expected_magic(expected_ndim)}"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{path}: truncated IDX header: {ndim} dims need {header_len} bytes, file has {len(data)}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _CODE_TO_DTYPE[code]
    expected_bytes = header_len + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected_bytes:
        dims = "x".join(str(s) for s in shape)
        what = "truncated" if len(data) < expected_bytes else "trailing data"
        raise DataError(
            f"{path}: {what}: header says {dims} {_CODE_NAMES[code]} ({expected_bytes} bytes with header), "
            f"file has {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    # frombuffer over bytes is read-only; astype copies into a writable native-endian array for torch.
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends with ``.gz``); returns the path.

    Supported dtypes: uint8, int8, int16, int32, float32, float64; any number of dims from 1 to 255.
    """
    path = Path(path)
    array = np.asarray(array)
    code = next((c for c, dt in _CODE_TO_DTYPE.items() if dt.newbyteorder("=") == array.dtype.newbyteorder("=")), None)
    if code is None:
        supported = ", ".join(_CODE_NAMES.values())
        raise DataError(f"{path}: cannot write dtype {array.dtype} as IDX (supported: {supported})")
    if not 1 <= array.ndim <= 255:
        raise DataError(f"{path}: cannot write a {array.ndim}-dim array as IDX (1 to 255 dims)")
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
    return path
