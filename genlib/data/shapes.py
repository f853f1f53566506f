"""Procedural drawn shapes: a small, deterministic second domain generated offline with numpy only.

Ten classes (``SHAPE_CLASSES``), each drawn at a random position, size and rotation, anti-aliased by
supersampling, with a little Gaussian pixel noise. Two renderings of the same scenes:

- greyscale: (N, 28, 28) float32 in [0, 1], a light shape on a black background (MNIST-like);
- colour: (N, 32, 32, 3) float32 in [0, 1], a bright shape on a dark background whose colours are
  drawn per image, independently of the class, so colour says nothing about the class.

``make_shapes(n, rgb=..., seed=...)`` returns (x, y) with y int64 (N,) class indices; the same
arguments give the same arrays on every machine (numpy's PCG64 generator). The named data sets
``shapes``, ``shapes-unlabelled``, ``shapes-rgb`` and ``shapes-rgb-unlabelled`` (registered here, drawn on
first use and cached like the others) are ``SHAPES_POOL`` images split by seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genlib.data.registry import Plan, Request, register_dataset

if TYPE_CHECKING:
    from genlib.data.splits import DataSplits

SHAPE_CLASSES = (
    "circle", "square", "triangle", "cross", "ring", "star", "bars", "crescent", "frame", "dots",
)
GREY_SIZE = 28
RGB_SIZE = 32
NOISE_STD = 0.03
_SUPERSAMPLE = 3  # sub-pixels per side: smooth edges without an image library


def _inside(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of points (u, v) inside shape ``name`` in its own frame (outer radius about 1)."""
    r = np.hypot(u, v)
    box = np.maximum(np.abs(u), np.abs(v))
    if name == "circle":
        return r <= 1.0
    if name == "square":
        return box <= 0.75
    if name == "triangle":  # equilateral, circumradius 1: inside all three edge half-planes
        angles = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.all([u * np.cos(a) + v * np.sin(a) <= 0.5 for a in angles], axis=0)
    if name == "cross":
        return ((np.abs(u) <= 0.28) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.28) & (np.abs(u) <= 0.95))
    if name == "ring":
        return (r <= 1.0) & (r >= 0.6)
    if name == "star":  # five points: the radius swings linearly between 0.42 and 1 with the angle
        theta = np.arctan2(v, u)
        tri = np.abs(((theta * 5 / (2 * np.pi)) % 1.0) - 0.5) * 2  # 1 at a point, 0 between points
        return r <= 0.42 + 0.58 * tri
    if name == "bars":  # three parallel stripes
        stripe = np.abs(u - np.round(u / 0.6) * 0.6) <= 0.16
        return stripe & (np.abs(u) <= 0.76) & (np.abs(v) <= 0.9)
    if name == "crescent":
        return (r <= 1.0) & (np.hypot(u - 0.5, v) > 0.78)
    if name == "frame":
        return (box <= 0.85) & (box >= 0.55)
    if name == "dots":  # three disks on a triangle
        centres = [(0.6 * np.cos(a), 0.6 * np.sin(a)) for a in np.pi / 2 + np.arange(3) * 2 * np.pi / 3]
        return np.any([np.hypot(u - cu, v - cv) <= 0.36 for cu, cv in centres], axis=0)
    raise ValueError(f"unknown shape {name!r}")


def _coverage(name: str, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, angle: np.ndarray,
              size: int) -> np.ndarray:
    """Fraction of each pixel covered by the shape: float32 (n, size, size) in [0, 1]."""
    ss = _SUPERSAMPLE
    grid = (np.arange(size * ss, dtype=np.float32) + 0.5) / ss  # sub-pixel centres in pixel units
    gy, gx = grid[None, :, None], grid[None, None, :]
    dx = (gx - cx[:, None, None]) / radius[:, None, None]
    dy = (gy - cy[:, None, None]) / radius[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    mask = _inside(name, u, v).astype(np.float32)
    return mask.reshape(len(cx), size, ss, size, ss).mean(axis=(2, 4))


def _random_colours(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """(n, 3) RGB colours with a uniform hue, saturation 0.5..1 and value in [lo, hi] (HSV to RGB)."""
    h = rng.uniform(0.0, 1.0, n) * 6.0
    s = rng.uniform(0.5, 1.0, n)
    val = rng.uniform(lo, hi, n)
    k = (np.array([5.0, 3.0, 1.0])[None, :] + h[:, None]) % 6.0
    return (val[:, None] - val[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


def make_shapes(n: int, *, rgb: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` shape images and their classes, balanced over ``SHAPE_CLASSES`` in a seeded random order.

    Returns x float32 (n, 28, 28) in [0, 1] (greyscale) or (n, 32, 32, 3) (``rgb=True``), and
    y int64 (n,) in 0..9. Every random draw comes from ``seed``.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    rng = np.random.default_rng(seed)
    size = RGB_SIZE if rgb else GREY_SIZE
    y = rng.permutation(np.arange(n) % len(SHAPE_CLASSES)).astype(np.int64)
    radius = rng.uniform(0.24, 0.42, n) * size
    # Centres keep the whole shape (outer radius 1 in its frame) inside the image.
    cx = rng.uniform(0.0, 1.0, n) * (size - 2 * radius - 2) + radius + 1
    cy = rng.uniform(0.0, 1.0, n) * (size - 2 * radius - 2) + radius + 1
    angle = rng.uniform(0.0, 2 * np.pi, n)
    # float32 geometry halves the work on the supersampled grids (the draws themselves stay float64).
    radius, cx, cy, angle = (a.astype(np.float32) for a in (radius, cx, cy, angle))
    cover = np.zeros((n, size, size), dtype=np.float32)
    for k, name in enumerate(SHAPE_CLASSES):
        idx = np.flatnonzero(y == k)
        for chunk in np.array_split(idx, max(1, len(idx) // 512)):  # bounds the supersampled grid's memory
            if len(chunk):
                cover[chunk] = _coverage(name, cx[chunk], cy[chunk], radius[chunk], angle[chunk], size)
    if rgb:
        fg = _random_colours(rng, n, 0.75, 1.0)[:, None, None, :]
        bg = _random_colours(rng, n, 0.0, 0.25)[:, None, None, :]
        x = bg + (fg - bg) * cover[..., None]
    else:
        x = cover * rng.uniform(0.7, 1.0, n).astype(np.float32)[:, None, None]
    x = x + NOISE_STD * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32), y


# --- the named sets: drawn on first use, always offline ------------------------------------------------

SHAPES_POOL = 12_000  # images per set before the seeded split (test 20%, then val 10% of the rest)
SHAPES_SEED = 0  # the drawing seed is fixed: ``seed`` only picks the split, as for the other named sets


def _shapes_file() -> Path:
    # The generator's source file keys the cache, so a change to the drawing rebuilds the prepared splits.
    return Path(__file__)


def _register_shapes(name: str, *, rgb: bool, labelled: bool) -> None:
    size = "32x32 RGB, colours random per image" if rgb else "28x28 greyscale"
    what = "10 classes" if labelled else "unlabelled"
    description = f"drawn shapes (circle, star, ring, ...), {size}, {what}, {SHAPES_POOL} images (generated offline)"

    def resolve(req: Request) -> Plan:
        def build() -> DataSplits:
            import torch

            from genlib.data.convert import images_to_tensor, split_pool
            x, y = make_shapes(SHAPES_POOL, rgb=rgb, seed=SHAPES_SEED)
            x_t = images_to_tensor(x, name)  # RGB comes as (N, H, W, 3): the layout is detected
            if not labelled:  # one class stands for "no labels", as for an .npz holding only x
                return split_pool(x_t, torch.zeros(len(x_t), dtype=torch.int64), req, num_classes=1)
            return split_pool(x_t, torch.from_numpy(y), req, num_classes=10)

        return Plan(
            kind=f"shapes:{'rgb' if rgb else 'grey'}:{'labelled' if labelled else 'unlabelled'}",
            source=f"genlib.data.shapes.make_shapes({SHAPES_POOL}, rgb={rgb}, seed={SHAPES_SEED})",
            build=build,
            files=(_shapes_file(),),
            params={"pool": SHAPES_POOL, "seed": req.seed, "val_fraction": req.val_fraction,
                    "test_fraction": req.test_fraction},
        )

    register_dataset(name, description=description, probe=lambda root: (True, "generated by genlib.data.shapes"))(resolve)


for _name, _rgb, _labelled in (
    ("shapes", False, True),
    ("shapes-unlabelled", False, False),
    ("shapes-rgb", True, True),
    ("shapes-rgb-unlabelled", True, False),
):
    _register_shapes(_name, rgb=_rgb, labelled=_labelled)
