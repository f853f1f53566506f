"""What a reviewer reads in MLflow's UI: version tags and descriptions, the weights' epoch, the training
run's link to its evaluation, and which metrics become MLflow metrics (chart sections)."""

from __future__ import annotations

import json
import types
import uuid

import pytest

pytest.register_assert_rewrite("tests.services")

pytest_plugins = ["tests.services"]

GAN = {"fid": 22.18, "fid_real_floor": 2.0, "recognised": 0.8, "precision": 0.7, "recall": 0.5, "test_loss": 3.0,
       "test_d_loss": 0.5, "baseline_sq_err_per_image": 36.0, "baseline_bernoulli_log_likelihood": -200.0,
       "eval_seconds": 4.0}


def test_first_version_reads_naturally_and_later_ones_name_the_version_they_replace():
    from genlib.tracking.gates import beats, check_gates
    from genlib.tracking.version_page import registration_description

    checks = check_gates("gan", GAN)
    promoted, reason = beats("gan", GAN, None)
    first = registration_description("genlib-gan-mnist", "1", promoted, reason, checks, None)
    assert first == "First version of genlib-gan-mnist, made champion: no version was champion before it (fid = 22.18)."
    promoted, reason = beats("gan", {**GAN, "fid": 20.0}, GAN)
    later = registration_description("genlib-gan-mnist", "3", promoted, reason, checks, "2")
    assert later.startswith("Version 3 of genlib-gan-mnist, made champion: fid = 20 beats")
    assert later.endswith("replacing version 2.") and "Champion since" not in later
    failing = check_gates("gan", {**GAN, "recognised": 0.1})
    assert registration_description("genlib-gan-mnist", "4", False, "x", failing, "3") == (
        "Version 4 of genlib-gan-mnist, not champion: it failed the recognised gate.")


def test_weights_epoch_is_the_last_without_early_stopping_and_the_best_with_it():
    from flows.train import weights_epoch
    from genlib.tracking.version_page import weights_label, weights_sentence

    fit = types.SimpleNamespace(epochs_run=10, best_epoch=8)
    assert weights_epoch(fit, patience=None) == 10  # genlib.training keeps the last weights
    assert weights_epoch(fit, patience=5) == 8  # ...and restores the best ones only with early stopping
    assert weights_sentence(10, 10, 8) == ("Weights of epoch 10, the last of 10 epochs (the best validation loss "
                                           "was at epoch 8; without early stopping the last weights are kept).")
    assert weights_sentence(8, 10, 8).startswith("Weights of epoch 8, the best validation loss of 10 epochs")
    assert weights_label(10, 10) == "epoch 10 of 10 (last)" and weights_label(8, 10) == "epoch 8 of 10 (best)"


def test_version_tags_are_a_handful_and_the_gate_object_keeps_the_family_evidence():
    from genlib.tracking.version_notes import metric_tags, metrics_from_tags, read_gates

    tags = metric_tags(GAN, "gan")
    assert sorted(k for k in tags if k.startswith("metric.")) == ["metric.fid"] and tags["metric.fid"] == "22.18"
    stored = read_gates(tags)["metrics"]
    assert "baseline_sq_err_per_image" not in stored and "eval_seconds" not in stored  # an autoencoder's baseline
    assert stored["fid"] == 22.18 and stored["fid_real_floor"] == 2.0 and read_gates(tags)["status"] == "passed"
    assert metrics_from_tags(tags)["fid"] == 22.18
    vae = metric_tags({**GAN, "test_sq_err_per_image": 8.0, "test_mse": 0.01}, "vae")
    assert read_gates(vae)["metrics"]["baseline_sq_err_per_image"] == 36.0  # its reconstruction gate reads it
    assert [k for k in vae if k.startswith("metric.")] == ["metric.test_loss", "metric.test_sq_err_per_image",
                                                           "metric.fid"]
    legacy = metric_tags({"test_loss": 1.25})  # versions registered before: one exact tag per metric
    assert legacy == {"metric.test_loss": "1.25"} and metrics_from_tags(legacy) == {"test_loss": 1.25}


def test_description_shows_gates_as_a_table_metrics_with_a_link_and_the_samples():
    from genlib.tracking.gates import check_gates
    from genlib.tracking.version_notes import gates_tag
    from genlib.tracking.version_page import artifact_image, version_description

    gates = json.loads(gates_tag(check_gates("gan", {**GAN, "recognised": 0.1})))
    text = version_description("First version of x.", weights="Weights of epoch 2, the last of 2 epochs.",
                               gates=gates, metrics=GAN, eval_run=("7", "abcdef0123"),
                               images=[artifact_image("r1", "snapshots/samples.png", "samples")])
    assert "**Gates: failed**\n\n| gate | metric | value | must be | result |" in text
    assert "| recognised | recognised | 0.1 | >= 0.4 | **failed** |" in text
    assert "[evaluation run abcdef01](#/experiments/7/runs/abcdef0123)" in text and "| fid | 22.18 |" in text
    assert text.endswith("![samples](get-artifact?path=snapshots%2Fsamples.png&run_uuid=r1)")


def test_metrics_with_a_slash_stay_out_of_mlflow_metrics():
    from genlib.tracking.runs import chart_metrics

    shown, kept = chart_metrics({"fid_real_floor": 3.0, "finetune/scratch/100/test_error_pct": 20.0,
                                 "suite_seconds/pca": 1.0, "note": "text"})
    assert shown == {"fid_real_floor": 3.0}
    assert kept == {"finetune/scratch/100/test_error_pct": 20.0, "suite_seconds/pca": 1.0}


def test_registration_and_evaluation_tell_the_reviewer_what_the_model_is(tracking, tmp_path):
    """Against a server: the logged model's and training run's descriptions end with a link to the
    evaluation run; the version says which epoch's weights it holds and shows the samples."""
    from mlflow import MlflowClient

    from genlib.tracking import tags as T
    from genlib.tracking.registry import register_version
    from genlib.tracking.runs import chart_metrics, link_evaluation, log_report

    client = MlflowClient()
    dataset = f"page{uuid.uuid4().hex[:6]}"
    experiment_id = client.create_experiment(f"genlib-{dataset}")
    run_id = client.create_run(experiment_id).info.run_id
    for key, value in {T.EPOCHS_RUN: "10", T.BEST_EPOCH: "8", T.WEIGHTS_EPOCH: "10",
                       T.MLFLOW_RUN_NOTE: "gan trained.\n\nTest metrics: not evaluated yet."}.items():
        client.set_tag(run_id, key, value)
    (tmp_path / "samples.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    client.log_artifact(run_id, str(tmp_path / "samples.png"), "snapshots")
    model = client.create_logged_model(experiment_id, source_run_id=run_id, name="gan-quick",
                                       tags={T.MLFLOW_RUN_NOTE: "gan-quick. Weights of epoch 10."})
    client.finalize_logged_model(model.model_id, "READY")
    client.set_terminated(run_id)
    eval_run = client.create_run(experiment_id).info.run_id

    report = types.SimpleNamespace(metrics={"fid": 22.18, "finetune/x/100/test_error_pct": 5.0}, tables={},
                                   figures={}, markdown=lambda: "# report\n")
    log_report(report, eval_run)
    assert set(client.get_run(eval_run).data.metrics) == set(chart_metrics(report.metrics)[0]) == {"fid"}
    kept = json.loads((tmp_path / "m" / "metrics.json").read_text()) if client.download_artifacts(
        eval_run, "metrics.json", str(tmp_path / "m")) else {}
    assert kept == {"fid": 22.18, "finetune/x/100/test_error_pct": 5.0}
    link_evaluation(run_id, model.model_id, experiment_id, eval_run, "fid 22.18")
    link_evaluation(run_id, model.model_id, experiment_id, eval_run, "fid 22.18")  # once, not twice
    ending = f"Test metrics (fid 22.18): [evaluation run {eval_run[:8]}](#/experiments/{experiment_id}/runs/{eval_run})."
    assert client.get_run(run_id).data.tags[T.MLFLOW_RUN_NOTE] == f"gan trained.\n\n{ending}"
    assert client.get_logged_model(model.model_id).tags[T.MLFLOW_RUN_NOTE] == (
        f"gan-quick. Weights of epoch 10.\n\n{ending}")

    reg = register_version(f"models:/{model.model_id}", run_id, "gan", dataset, "d" * 64, GAN, commit="x",
                           extra_tags={T.EVAL_RUN_ID: eval_run})
    mv = client.get_model_version(reg.name, reg.version)
    assert mv.tags["weights"] == "epoch 10 of 10 (last)" and mv.tags["gates"] == "passed"
    assert mv.description.startswith(f"First version of {reg.name}, made champion: no version was champion")
    assert "Weights of epoch 10, the last of 10 epochs (the best validation loss was at epoch 8" in mv.description
    assert f"![samples](get-artifact?path=snapshots%2Fsamples.png&run_uuid={run_id})" in mv.description
