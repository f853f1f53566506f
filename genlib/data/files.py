"""Data sets given as a path: a folder of IDX files, an ``.npz`` file (x as (N, H, W), (N, H, W, C) or (N, C, H, W),
optional y), or a folder of PNGs (one subfolder per class, or PNGs alone: unlabelled), greyscale or RGB."""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from genlib.data.convert import (
    images_to_tensor,
    labels_to_tensor,
    read_idx_pair,
    split_official,
    split_pool,
)
from genlib.data.registry import Plan, Request
from genlib.data.splits import DataSplits
from genlib.errors import DataError

logger = logging.getLogger(__name__)


def _split_params(req: Request) -> dict:
    return {"seed": req.seed, "val_fraction": req.val_fraction, "test_fraction": req.test_fraction}


# --- folder of IDX files -------------------------------------------------------------------------------


def _idx_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, label files) directly in ``folder``; when both plain and .gz exist, the plain one."""
    images, labels = {}, {}
    for p in sorted(folder.iterdir()):
        low = p.name.lower()
        if not p.is_file() or low.endswith(".tmp"):
            continue
        stem = low.removesuffix(".gz")
        if "images" in low and "idx3" in low:
            images.setdefault(stem, p)
        elif "labels" in low and "idx1" in low:
            labels.setdefault(stem, p)
    # sorted() puts "x" before "x.gz", so setdefault kept the uncompressed file.
    return list(images.values()), list(labels.values())


def _idx_dir(folder: Path) -> Path | None:
    """``folder`` itself, or its torchvision-style ``raw/`` subfolder, when it holds IDX images and labels."""
    for candidate in (folder, folder / "raw"):
        if candidate.is_dir():
            images, labels = _idx_files(candidate)
            if images and labels:
                return candidate
    return None


def _role(path: Path) -> str | None:
    low = path.name.lower()
    if "t10k" in low or "test" in low:
        return "test"
    if "train" in low:
        return "train"
    return None


def _pair_idx(folder: Path) -> dict[str, tuple[Path, Path]]:
    """{"all": pair} for a single images/labels pair, or {"train": pair, "test": pair} by file names."""
    images, labels = _idx_files(folder)
    if len(images) == 1 and len(labels) == 1:
        return {"all": (images[0], labels[0])}
    by_role: dict[str, dict[str, list[Path]]] = {r: {"images": [], "labels": []} for r in ("train", "test")}
    for kind, paths in (("images", images), ("labels", labels)):
        for p in paths:
            role = _role(p)
            if role is not None:
                by_role[role][kind].append(p)
    if all(len(by_role[r][k]) == 1 for r in by_role for k in ("images", "labels")):
        return {r: (by_role[r]["images"][0], by_role[r]["labels"][0]) for r in by_role}
    names = ", ".join(p.name for p in images + labels)
    raise DataError(
        f"{folder}: cannot pair IDX files ({names}); expected one images/labels pair, "
        "or one train and one test (t10k) pair told apart by their names"
    )


def _is_idx_folder(path: Path) -> bool:
    return path.is_dir() and _idx_dir(path) is not None


def _resolve_idx_folder(path: Path, req: Request) -> Plan:
    folder = _idx_dir(path)
    pairs = _pair_idx(folder)
    files = tuple(p for pair in pairs.values() for p in pair)

    def build() -> DataSplits:
        if "all" in pairs:
            return split_pool(*read_idx_pair(*pairs["all"]), req)
        return split_official(*read_idx_pair(*pairs["train"]), *read_idx_pair(*pairs["test"]), req)

    how = "split by seed" if "all" in pairs else "official train/test"
    params = _split_params(req) if "all" in pairs else {"seed": req.seed, "val_fraction": req.val_fraction}
    return Plan(kind="path:idx", source=f"IDX files in {folder} ({how})", build=build, files=files, params=params)


# --- .npz file -------------------------------------------------------------------------------------------


def _is_npz(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def _resolve_npz(path: Path, req: Request) -> Plan:
    def build() -> DataSplits:
        try:
            with np.load(path, allow_pickle=False) as npz:
                keys = list(npz.keys())
                if "x" not in keys:
                    found = ", ".join(keys) or "none"
                    raise DataError(f"{path}: needs an array 'x' of images (N, H, W), (N, H, W, C) or (N, C, H, W); arrays found: {found}")
                x = images_to_tensor(npz["x"], f"{path} (x)")
                y = labels_to_tensor(npz["y"], len(x), f"{path} (y)") if "y" in keys else None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise DataError(f"{path}: not a readable .npz file ({type(err).__name__}: {err})") from None
        if y is None:
            # Unlabelled images are fine for generative models: one class.
            y = torch.zeros(len(x), dtype=torch.int64)
        return split_pool(x, y, req)

    return Plan(kind="path:npz", source=f"npz file {path}", build=build, files=(path,), params=_split_params(req))


# --- PNG folders: one subfolder per class, or just PNGs (unlabelled) -------------------------------------


def _pngs_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png")


def _png_classes(folder: Path) -> list[tuple[str, list[Path]]]:
    """[(class name, sorted PNG files)] for each subfolder holding PNGs, sorted by class name."""
    classes = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        pngs = _pngs_in(sub)
        if pngs:
            classes.append((sub.name, pngs))
    return classes


def _is_png_folder(path: Path) -> bool:
    return path.is_dir() and bool(_png_classes(path) or _pngs_in(path))


def _read_pngs(paths: list[Path], first: Path) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB pixels of every PNG (palette, grey and alpha images converted; alpha dropped)."""
    from PIL import Image

    images = []
    expected: tuple[int, int] | None = None
    for p in paths:
        try:
            with Image.open(p) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except OSError as err:
            raise DataError(f"{p}: cannot read PNG ({err})") from None
        size = (rgb.shape[1], rgb.shape[0])
        if expected is None:
            expected = size
        elif size != expected:
            raise DataError(f"{p}: image is {size[0]}x{size[1]} (WxH), expected {expected[0]}x{expected[1]} like {first}")
        images.append(rgb)
    return np.stack(images)


def _resolve_png_folder(path: Path, req: Request) -> Plan:
    classes = _png_classes(path)
    loose = _pngs_in(path)
    if classes and loose:
        raise DataError(f"{path}: holds both PNG files ({loose[0].name}, ...) and class folders "
                        f"({classes[0][0]}, ...); use one class folder per class, or only PNGs for unlabelled images")
    if not classes:
        classes = [("", loose)]  # unlabelled: one class
    files = tuple(p for _, pngs in classes for p in pngs)

    def build() -> DataSplits:
        rgb = _read_pngs(list(files), files[0])
        # Greyscale when every pixel has equal channels (grey PNGs, or grey saved as RGB), else RGB.
        grey = bool((rgb[..., :1] == rgb).all())
        x = images_to_tensor(rgb[..., 0] if grey else rgb, path)
        y = torch.repeat_interleave(torch.arange(len(classes)), torch.tensor([len(p) for _, p in classes]))
        return split_pool(x, y, req, num_classes=len(classes))

    what = (f"{len(classes)} classes: {', '.join(name for name, _ in classes)}" if classes[0][0]
            else "unlabelled")
    return Plan(
        kind="path:png",
        source=f"PNG folder {path} ({what})",
        build=build,
        files=files,
        params=_split_params(req),
    )


# Ordered: the first format whose predicate accepts the path handles it.
PATH_FORMATS: list[tuple[str, Callable[[Path], bool], Callable[[Path, Request], Plan]]] = [
    ("npz file", _is_npz, _resolve_npz),
    ("folder of IDX files", _is_idx_folder, _resolve_idx_folder),
    ("folder of per-class PNG folders, or of PNGs (unlabelled)", _is_png_folder, _resolve_png_folder),
]


def resolve_path(path: Path, req: Request) -> Plan:
    """Plan for a data set on disk in any of ``PATH_FORMATS``; DataError when none applies."""
    for _, accepts, resolve in PATH_FORMATS:
        if accepts(path):
            return resolve(path, req)
    kinds = "; ".join(k for k, _, _ in PATH_FORMATS)
    raise DataError(
        f"{path}: not a recognised data set; expected one of: {kinds} "
        "(IDX files named *images*idx3* / *labels*idx1*, PNGs in <path>/<class>/*.png or <path>/*.png)"
    )
