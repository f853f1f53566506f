"""Data without class labels: loaded as one class, trained and evaluated by every family that needs no
labels; conditional families and label-needing evaluations are skipped with a reason, or refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genlib.cli import main
from genlib.data import has_labels, load_dataset
from genlib.data.shapes import make_shapes
from genlib.errors import ConfigError
from genlib.evaluation import REAL_FLOOR_NAME, evaluate_model, evaluate_suite
from genlib.models import list_models
from genlib.models.catalog import model_info
from genlib.spec import data_shape, resolve_spec
from genlib.training import train_model
from tests.test_evaluation import tiny_profile
from tests.tiny_configs import TINY

CONDITIONAL = [f for f in list_models() if model_info(f).conditional]
UNCONDITIONAL = [f for f in list_models() if not model_info(f).conditional]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GENLIB_DATA_ROOT", str(tmp_path / "no-data-root"))


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    """An .npz holding only x: 150 greyscale 28x28 shapes."""
    path = tmp_path_factory.mktemp("unlabelled") / "x.npz"
    np.savez(path, x=(make_shapes(150, seed=0)[0] * 255).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def data(npz, tmp_path_factory):
    return load_dataset(str(npz), cache_dir=tmp_path_factory.mktemp("cache"))


def test_unlabelled_sets_have_no_labels(data):
    assert not data.labelled and not has_labels(data) and data.num_classes == 1
    assert load_dataset("digits").labelled


def _trained(family, data):
    spec = resolve_spec("quick", family, {"model": TINY[family], "train": {"epochs": 1, "batch_size": 32}},
                        data_shape(data))
    return train_model(spec.model, data, spec.train, device="cpu", progress=False).model


@pytest.mark.parametrize("family", CONDITIONAL)
def test_conditional_training_on_unlabelled_data_refused(data, family):
    with pytest.raises(ConfigError, match="conditional and needs class labels"):
        _trained(family, data)


@pytest.mark.parametrize("family", UNCONDITIONAL)
def test_evaluation_without_labels_skips_what_needs_them(data, family):
    model = _trained(family, data)
    report = evaluate_model(model, data, tiny_profile(), device="cpu")
    assert "test_loss" in report.metrics and "class_accuracy" not in report.metrics
    assert "reconstruction_per_class" not in report.tables
    if model.generates:
        assert f"samples_{family}" in report.figures
        skipped = report.tables["skipped"]
        assert skipped["section"].tolist() == ["generative_quality"] and skipped["reason"].str.contains("labels").all()
    else:
        assert "skipped" not in report.tables


def test_suite_without_labels_runs_pca_and_names_the_skipped_parts(data):
    report = evaluate_suite(data, tiny_profile(), device="cpu")
    assert "pca_vs_ae" in report.tables and "probe_accuracy" not in report.tables["pca_vs_ae"].columns
    assert not {"finetune", "augmentation", "latent_sampling", "generative_vs_discriminative"} & set(report.tables)
    assert "rbm" in set(report.tables["pca_vs_ae"]["method"])  # its reconstruction needs no labels
    skipped = report.tables["skipped"]
    assert {"finetune", "augmentation", "latent_sampling", "generative_vs_discriminative"} <= set(skipped["section"])
    assert any(all(f in s for f in CONDITIONAL) for s in skipped["section"])
    assert all(np.isfinite(v) for v in report.metrics.values())
    # The real images' own row, in the contrastive space the unlabelled samples are scored in.
    floor = report.tables["generative_quality"]
    assert list(floor["model"]) == [REAL_FLOOR_NAME] and np.isfinite(floor["fid"]).all()
    assert "real_floor" not in set(skipped["section"]) and "fid_real_floor" in report.metrics


def test_pipeline_params_skip_conditional_families_with_a_reason(data):
    from flows.params import PipelineParams

    params = PipelineParams(models=list_models(), model_overrides={f: {"lr": 1e-3} for f in list_models()})
    left, skipped = params.without_label_needing(data)
    assert sorted(skipped) == sorted(CONDITIONAL) and all("labels" in r for r in skipped.values())
    assert left.models == UNCONDITIONAL and set(left.model_overrides) == set(UNCONDITIONAL)
    assert params.without_label_needing(load_dataset("digits")) == (params, {})
    with pytest.raises(ConfigError, match="every family asked for"):
        PipelineParams(models=CONDITIONAL).without_label_needing(data)


def test_summary_shows_skipped_families(data):
    from types import SimpleNamespace

    from flows.params import DatasetRef, FamilySummary, PipelineResult
    from genlib.cli.summary import pipeline_summary

    ref = DatasetRef(params={"dataset": "x.npz"}, name="x.npz", digest="0" * 64, sizes={"train": 1, "val": 1, "test": 1},
                     image_shape=(1, 28, 28), num_classes=1, experiment_id="1")
    result = PipelineResult(dataset=ref, families=[FamilySummary(family="cvae", skipped="no labels: cvae is conditional")],
                            tracking_uri="sqlite:///x.db", report_run_id="r1")
    text = pipeline_summary(result, 1.0, 0.5, SimpleNamespace(local=True, uri="sqlite:///x.db"), "prefect")
    assert "skipped: no labels: cvae is conditional" in text and "no class labels" in text


def test_train_cli_refuses_a_conditional_model_on_unlabelled_data(npz, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", CONDITIONAL[0], "--dataset", str(npz), "--out", str(tmp_path / "out"), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and "needs class labels" in err
    assert not (tmp_path / "out").exists()
