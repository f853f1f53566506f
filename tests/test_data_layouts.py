"""Image layouts: .npz arrays as (N, H, W), (N, H, W, C) and (N, C, H, W); greyscale and RGB PNG folders;
every family trains, samples and draws colour grids on a tiny 32x32 RGB set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genlib.cli import main
from genlib.data import load_dataset
from genlib.data.convert import channels_first
from genlib.data.shapes import make_shapes
from genlib.errors import ConfigError, DataError
from genlib.images import model_figures, save_figure
from genlib.models import list_models
from genlib.spec import data_shape, resolve_spec
from genlib.training import train_model
from tests.tiny_configs import TINY


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GENLIB_DATA_ROOT", str(tmp_path / "no-data-root"))


@pytest.fixture(scope="module")
def rgb() -> tuple[np.ndarray, np.ndarray]:
    """96 shapes as uint8 (96, 32, 32, 3), the layout numpy and PIL use, and their classes (the gan's
    clustering wants 50 training images)."""
    x, y = make_shapes(96, rgb=True, seed=0)
    return (x * 255).round().astype(np.uint8), y


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_rgb_npz_layouts_load_alike(tmp_path, rgb, layout):
    x, y = rgb
    stored = x if layout == "NHWC" else x.transpose(0, 3, 1, 2)
    data = load_dataset(str(_save(tmp_path / "rgb.npz", x=stored, y=y)))
    assert data.image_shape == (3, 32, 32) and data.num_classes == 10
    want = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    got = torch.cat([data.x_train, data.x_val, data.x_test])
    # Every loaded image is one of the originals, channels in place (compare as sets: the split shuffles).
    assert sorted(got.flatten(1).sum(1).tolist()) == pytest.approx(sorted(want.flatten(1).sum(1).tolist()))
    assert torch.equal(got[0], want[int(torch.argmin((want - got[0]).abs().flatten(1).sum(1)))])


@pytest.mark.parametrize("shape", [(5, 6, 7), (5, 6, 7, 1), (5, 1, 6, 7)])
def test_greyscale_layouts(shape):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    out = channels_first(x, "x")
    assert out.shape == (5, 1, 6, 7)
    assert np.array_equal(out.reshape(5, 42), x.reshape(5, 42))


@pytest.mark.parametrize("shape", [(4, 3, 32, 3), (4, 1, 28, 1), (4, 3, 5, 1)])
def test_ambiguous_layout_is_one_line_naming_the_shape(shape):
    with pytest.raises(DataError, match="ambiguous") as info:
        channels_first(np.zeros(shape, np.uint8), "f.npz")
    assert str(shape) in str(info.value) and "\n" not in str(info.value)


def test_no_channel_axis_refused():
    with pytest.raises(DataError, match=r"\(4, 4, 8, 8\).*no channel axis"):
        channels_first(np.zeros((4, 4, 8, 8), np.uint8), "f.npz")


def test_ambiguous_npz_exits_2_with_one_line(tmp_path, capsys):
    path = _save(tmp_path / "amb.npz", x=np.zeros((40, 3, 32, 3), np.uint8))
    with pytest.raises(SystemExit) as info:
        main(["train", "ae", "--dataset", str(path), "--out", str(tmp_path / "out"), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error:") and "(40, 3, 32, 3)" in err and not (tmp_path / "out").exists()


def _png_tree(root, images: np.ndarray, labels: np.ndarray | None) -> None:
    for i, img in enumerate(images):
        folder = root / f"class{labels[i]}" if labels is not None else root
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:03d}.png")


def test_png_folders_rgb_grey_and_unlabelled(tmp_path, rgb):
    x, y = rgb
    _png_tree(tmp_path / "rgb", x[:30], y[:30])
    data = load_dataset(str(tmp_path / "rgb"))
    assert data.image_shape == (3, 32, 32) and data.num_classes == len(set(y[:30].tolist()))
    _png_tree(tmp_path / "grey", x[:30, :, :, 0], y[:30])
    # Greyscale saved as RGB is still greyscale: one channel.
    _png_tree(tmp_path / "grey-as-rgb", np.repeat(x[:30, :, :, :1], 3, axis=3), y[:30])
    for name in ("grey", "grey-as-rgb"):
        assert load_dataset(str(tmp_path / name)).image_shape == (1, 32, 32)
    _png_tree(tmp_path / "flat", x[:30], None)
    flat = load_dataset(str(tmp_path / "flat"))
    assert flat.num_classes == 1 and sum(flat.sizes.values()) == 30 and "unlabelled" in flat.source


def test_png_folder_with_loose_pngs_and_class_folders_refused(tmp_path, rgb):
    x, y = rgb
    _png_tree(tmp_path / "mixed", x[:4], y[:4])
    _png_tree(tmp_path / "mixed", x[4:6], None)
    with pytest.raises(DataError, match="both PNG files"):
        load_dataset(str(tmp_path / "mixed"))


@pytest.fixture(scope="module")
def rgb_splits(tmp_path_factory, rgb):
    folder = tmp_path_factory.mktemp("rgb")
    x, y = rgb
    return load_dataset(str(_save(folder / "rgb.npz", x=x, y=y)), cache_dir=folder / "cache")


@pytest.mark.parametrize("family", list_models())
def test_every_family_trains_samples_and_draws_colour_on_rgb_32(tmp_path, rgb_splits, family):
    data = rgb_splits
    spec = resolve_spec("quick", family, {"model": TINY.get(family, {}), "train": {"epochs": 1, "batch_size": 16}},
                        data_shape(data))
    model = train_model(spec.model, data, spec.train, device="cpu", progress=False).model
    if model.generates:
        labels = torch.arange(4) if model.conditional else None
        assert model.sample(4, labels=labels).shape == (4, 3, 32, 32)
    figures = model_figures(model, data.x_test, data.y_test)
    assert figures
    for name, fig in figures.items():
        assert fig.axes[0].images[0].get_array().shape[-1] == 3, name  # drawn as RGB, not as a grey map
        if name == "reconstructions":  # its "original" rows are the coloured inputs: the PNG keeps colour
            assert _colourful(save_figure(fig, tmp_path / f"{name}.png"))


def _colourful(png) -> bool:
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return bool(np.abs(pixels[..., 0] - pixels[..., 1]).max() > 40)  # a grey grid has R == G == B


def test_colour_samples_grid_keeps_colour(tmp_path, rgb):
    from genlib.images import samples_figure

    x = torch.from_numpy(rgb[0][:20].transpose(0, 3, 1, 2).astype(np.float32) / 255)
    assert _colourful(save_figure(samples_figure(x), tmp_path / "s.png"))
    assert not _colourful(save_figure(samples_figure(x[:, :1]), tmp_path / "g.png"))


@pytest.fixture(scope="module")
def odd_splits(tmp_path_factory, rgb):
    folder = tmp_path_factory.mktemp("odd")
    x, y = rgb
    return load_dataset(str(_save(folder / "odd.npz", x=x[:, :30, :30], y=y)), cache_dir=folder / "cache")


@pytest.mark.parametrize("family", list_models())
def test_other_sizes_train_or_say_why_not_in_one_line(odd_splits, family):
    # 30x30: the dense families take it; the conv ones halve the size twice and need it divisible by 4.
    spec = resolve_spec("quick", family, {"model": TINY.get(family, {}), "train": {"epochs": 1, "batch_size": 32}},
                        data_shape(odd_splits))
    try:
        model = train_model(spec.model, odd_splits, spec.train, device="cpu", progress=False).model
    except ConfigError as err:
        assert "divisible by 4, got 30x30" in str(err) and "\n" not in str(err)
        assert family in ("conv-ae", "gan", "cgan")
    else:
        labels = torch.arange(2) if model.conditional else None
        assert not model.generates or model.sample(2, labels=labels).shape == (2, 3, 30, 30)
