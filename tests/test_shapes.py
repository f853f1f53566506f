"""Tests of the procedural shapes domain (genlib.data.shapes) and its named data sets."""

from __future__ import annotations

import numpy as np
import pytest

from genlib.data import dataset_names, list_datasets, load_dataset, shapes
from genlib.data.shapes import GREY_SIZE, RGB_SIZE, SHAPE_CLASSES, make_shapes


def test_make_shapes_is_deterministic_balanced_and_in_range():
    x, y = make_shapes(200, seed=3)
    x2, y2 = make_shapes(200, seed=3)
    assert x.shape == (200, GREY_SIZE, GREY_SIZE) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(x, make_shapes(200, seed=4)[0])
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert np.bincount(y, minlength=len(SHAPE_CLASSES)).tolist() == [20] * len(SHAPE_CLASSES)
    # Every image shows a shape: a good part of its pixels are lit, far above the noise.
    lit = (x > 0.5).mean(axis=(1, 2))
    assert lit.min() > 0.02 and lit.max() < 0.6


def test_rgb_shapes_colour_is_not_the_class():
    x, y = make_shapes(400, rgb=True, seed=0)
    assert x.shape == (400, RGB_SIZE, RGB_SIZE, 3)
    grey, _ = make_shapes(10, rgb=True, seed=1)
    assert np.abs(grey[..., 0] - grey[..., 1]).mean() > 0.05  # really coloured, not three equal channels
    # The brightest pixel's colour of each image: its mean per class barely differs from the overall mean.
    flat = x.reshape(len(x), -1, 3)
    fg = flat[np.arange(len(x)), flat.sum(-1).argmax(1)]
    per_class = np.stack([fg[y == k].mean(0) for k in range(len(SHAPE_CLASSES))])
    assert np.abs(per_class - fg.mean(0)).max() < 0.15


def test_classes_differ_in_shape():
    # Mean images per class differ: classes are told apart by what is drawn.
    x, y = make_shapes(500, seed=0)
    means = np.stack([x[y == k].mean(0) for k in range(len(SHAPE_CLASSES))])
    dist = np.abs(means[:, None] - means[None]).mean(axis=(2, 3))
    assert dist[~np.eye(len(SHAPE_CLASSES), dtype=bool)].min() > 0.005


@pytest.mark.parametrize("name, shape, classes", [
    ("shapes", (1, 28, 28), 10), ("shapes-unlabelled", (1, 28, 28), 1),
    ("shapes-rgb", (3, 32, 32), 10), ("shapes-rgb-unlabelled", (3, 32, 32), 1),
])
def test_named_shapes_sets(tmp_path, monkeypatch, name, shape, classes):
    monkeypatch.setattr(shapes, "SHAPES_POOL", 600)  # the full set takes seconds to draw; the plumbing is the same
    assert name in dataset_names()
    assert next(i for i in list_datasets() if i.name == name).available_offline
    data = load_dataset(name, cache_dir=tmp_path)
    assert data.image_shape == shape and data.num_classes == classes
    assert sum(data.sizes.values()) == 600
    again = load_dataset(name, cache_dir=tmp_path)  # from the cache
    assert again.digest == data.digest and list(tmp_path.glob("*.pt"))
    assert again.subset(n_train=100, n_val=20).sizes["train"] == 100
