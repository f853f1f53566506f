"""The feature spaces that score samples: the contrastive encoder (no labels) is deterministic, cached by data
digest and works on greyscale and colour images; the reference row is cached; and no metric depends on the
order of the data (class-sorted files give the values of shuffled ones)."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from genlib.data.splits import compute_digest
from genlib.evaluation.contrastive import ContrastiveConfig, get_contrastive_encoder

FEW_STEPS = dict(steps=4, batch_size=32)


def images(shape: tuple[int, ...], n: int = 64, seed: int = 0) -> SimpleNamespace:
    """A label-free data stand-in: n images of ``shape`` with some structure (bright squares on noise)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.2 * torch.rand(n, *shape, generator=g)
    for i in range(n):
        r, c = torch.randint(0, shape[1] // 2, (2,), generator=g).tolist()
        x[i, :, r : r + shape[1] // 3, c : c + shape[2] // 3] = torch.rand(shape[0], 1, 1, generator=g)
    return SimpleNamespace(x_train=x, name="synthetic", digest=compute_digest(x), num_classes=1)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_contrastive_encoder_is_deterministic_and_works_on_grey_and_colour(shape, tmp_path):
    data = images(shape)
    a = get_contrastive_encoder(data, device="cpu", cache_dir=tmp_path / "a", config=ContrastiveConfig(
        image_shape=shape, **FEW_STEPS))
    b = get_contrastive_encoder(data, device="cpu", cache_dir=tmp_path / "b", config=ContrastiveConfig(
        image_shape=shape, **FEW_STEPS))
    fa, probs = a.embed(data.x_train)
    assert fa.shape == (64, a.config.feature_dim) and probs is None and math.isnan(a.test_accuracy)
    assert torch.isfinite(fa).all() and fa.std(0).sum() > 0
    assert torch.equal(fa, b.embed(data.x_train)[0])  # trained twice from scratch: the same features


def test_contrastive_encoder_is_cached_by_digest(tmp_path, monkeypatch):
    import genlib.evaluation.contrastive as contrastive

    data = images((1, 28, 28))
    config = ContrastiveConfig(**FEW_STEPS)
    first = get_contrastive_encoder(data, device="cpu", cache_dir=tmp_path, config=config)
    assert len(list(tmp_path.glob("contrastive_encoder/*.pt"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained again despite the cache")

    monkeypatch.setattr(contrastive, "train_contrastive", no_training)
    again = get_contrastive_encoder(data, device="cpu", cache_dir=tmp_path, config=config)
    assert torch.equal(first.embed(data.x_train)[0], again.embed(data.x_train)[0])
    with pytest.raises(AssertionError, match="trained again"):  # other images: another digest, another file
        get_contrastive_encoder(images((1, 28, 28), seed=1), device="cpu", cache_dir=tmp_path, config=config)


def test_feature_space_follows_the_labels(tmp_path):
    from genlib.evaluation.classifier import FeatureClassifier
    from genlib.evaluation.contrastive import ContrastiveEncoder
    from genlib.evaluation.features import get_feature_space

    data = images((1, 28, 28))
    space = get_feature_space(data, device="cpu", epochs=1, cache_dir=tmp_path)  # one class: no labels
    assert isinstance(space, ContrastiveEncoder) and space.config.steps == 25
    labelled = SimpleNamespace(**{**vars(data), "num_classes": 2, "x_test": data.x_train[:8],
                                  "y_train": torch.arange(64) % 2, "y_test": torch.arange(8) % 2})
    assert isinstance(get_feature_space(labelled, device="cpu", epochs=1, cache_dir=tmp_path), FeatureClassifier)


@pytest.fixture(scope="module")
def digits():
    from genlib.data import load_dataset

    return load_dataset("digits")  # 1294 / 144 / 359 images, 28x28, 10 classes, in shuffled order


def sorted_by_class(data):
    """The same images with train and test in label order (as a folder-per-class set is read)."""
    tr, te = data.y_train.argsort(stable=True), data.y_test.argsort(stable=True)
    arrays = dict(x_train=data.x_train[tr], y_train=data.y_train[tr], x_test=data.x_test[te], y_test=data.y_test[te])
    digest = compute_digest(arrays["x_train"], arrays["y_train"], data.x_val, data.y_val, arrays["x_test"],
                            arrays["y_test"])
    return dataclasses.replace(data, **arrays, digest=digest)


@pytest.mark.parametrize("labelled", [True, False])
def test_class_sorted_data_give_the_values_of_shuffled_data(digits, labelled, tmp_path):
    from genlib.evaluation.classifier import get_feature_classifier
    from genlib.evaluation.generative import real_floor_row

    if labelled:
        space = get_feature_classifier(digits, device="cpu", epochs=3, cache_dir=tmp_path)
    else:
        space = get_contrastive_encoder(digits, device="cpu", cache_dir=tmp_path,
                                        config=ContrastiveConfig(steps=30, batch_size=128))
    kw = dict(n=400, k=3, splits=10, seed=0, batch_size=512)
    shuffled = real_floor_row(space, digits, **kw)
    ordered = real_floor_row(space, sorted_by_class(digits), **kw)
    # Different random subsets of the same images: equal within sampling noise.
    assert ordered["precision"] == pytest.approx(shuffled["precision"], abs=0.08)
    assert ordered["recall"] == pytest.approx(shuffled["recall"], abs=0.08)
    assert ordered["fid"] == pytest.approx(shuffled["fid"], rel=0.5, abs=1.0)
    if labelled:
        # In file order, each of the 10 chunks of sorted data held one class: IS ~1 instead of ~the class count.
        assert ordered["inception_score"] == pytest.approx(shuffled["inception_score"], rel=0.15)
        assert ordered["recognised"] == pytest.approx(shuffled["recognised"], abs=0.08)


def test_inception_score_does_not_depend_on_row_order():
    from genlib.evaluation.generative import inception_score

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(1000) % 10
    probs = torch.softmax(torch.randn(1000, 10, generator=g) + 4 * torch.nn.functional.one_hot(labels, 10), 1)
    by_class = probs[labels.argsort(stable=True)]
    assert inception_score(by_class, 10)[0] == pytest.approx(inception_score(probs, 10)[0], rel=0.05)
    assert inception_score(by_class, 10)[0] > 3  # in file order the chunks would be single-class: IS ~1


def test_reference_row_is_computed_once(digits, tmp_path, monkeypatch):
    import genlib.evaluation.features as features
    from genlib.evaluation.classifier import get_feature_classifier

    space = get_feature_classifier(digits, device="cpu", epochs=1, cache_dir=tmp_path)
    kw = dict(n=100, k=3, splits=2, seed=0, batch_size=512, cache_dir=tmp_path)
    row = features.reference_row(space, digits, **kw)
    assert row["fid_scale"] > row["fid"] > 0 and len(list(tmp_path.glob("reference/*.json"))) == 1

    def no_recompute(*args, **kwargs):
        raise AssertionError("computed again despite the cache")

    monkeypatch.setattr(features, "real_floor_row", no_recompute)
    assert features.reference_row(space, digits, **kw) == row
    ref = features.reference_metrics(row, labelled=True)
    assert ref["reference_labelled"] == 1.0 and ref["reference_fid"] == row["fid"]
    assert "reference_recognised" not in features.reference_metrics(row, labelled=False)


def test_evaluate_model_on_unlabelled_data_scores_in_the_contrastive_space(tmp_path):
    from genlib.data.splits import make_splits
    from genlib.evaluation import evaluate_model
    from genlib.models import get_model, make_config
    from genlib.tracking.gates import check_gates
    from tests.test_evaluation import tiny_profile
    from tests.tiny_configs import TINY

    x = images((1, 28, 28), n=240).x_train
    zeros = torch.zeros(240, dtype=torch.int64)
    data = make_splits("unlabelled", x[:120], zeros[:120], x[120:160], zeros[120:160], x[160:], zeros[160:],
                       num_classes=1, source="test")
    space = get_contrastive_encoder(data, device="cpu", cache_dir=tmp_path, config=ContrastiveConfig(**FEW_STEPS))
    torch.manual_seed(0)
    model = get_model("vae", make_config("vae", {"image_shape": (1, 28, 28), **TINY["vae"]}))
    report = evaluate_model(model, data, tiny_profile(), device="cpu", features=space)
    m = report.metrics
    assert {"fid", "precision", "recall", "reference_fid", "reference_fid_scale"} <= set(m)
    assert m["reference_labelled"] == 0.0
    assert not {"recognised", "inception_score", "class_accuracy", "feature_classifier_test_accuracy"} & set(m)
    checks = {c.gate: c for c in check_gates("vae", {**m, "baseline_sq_err_per_image": 1e9})}
    assert checks["recognised"].op == "skip" and checks["recognised"].passed
    assert checks["recall"].threshold == pytest.approx(0.1 * m["reference_recall"])
