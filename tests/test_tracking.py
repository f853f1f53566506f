"""genlib.tracking against a real MLflow server: store resolution, the callback, pyfunc packaging, gates,
registration and promotion refusals."""

from __future__ import annotations

import math
import time
import uuid

import numpy as np
import pytest
import torch

from genlib.errors import GenlibError

pytest.register_assert_rewrite("tests.services")  # before importing it: it is a plugin too (below)
from tests.services import SCRATCH, closed_port_uri

pytest_plugins = ["tests.services"]  # session services shared with the other modules


@pytest.fixture(scope="module")
def tiny_data():
    from genlib.data import load_dataset

    return load_dataset("digits").subset(300, 60, 100, seed=0)


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


# --- store ----------------------------------------------------------------------------------------


def test_embedded_store_lives_in_genlib_mlflow_dir(monkeypatch):
    from genlib.tracking import resolve_tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("GENLIB_MLFLOW_DIR", str(SCRATCH / "store-x"))
    target = resolve_tracking()
    assert target.uri == f"sqlite:///{SCRATCH / 'store-x' / 'mlflow.db'}"
    assert target.artifact_root == SCRATCH / "store-x" / "artifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:5000")
    assert resolve_tracking().uri == "http://example.invalid:5000" and not resolve_tracking().local
    # Any sqlite store keeps its artifacts beside the database, never in ./mlruns.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{SCRATCH / 'other' / 'x.db'}")
    assert resolve_tracking().artifact_root == SCRATCH / "other" / "artifacts"


def test_unreachable_server_fails_fast_naming_the_uri():
    from genlib.tracking import TrackingUnavailableError, check_tracking

    uri = closed_port_uri()
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match=uri.replace(".", r"\.")):
        check_tracking(uri, timeout=3)
    assert time.monotonic() - t0 < 5


def test_sqlite_store_in_unwritable_place_is_refused(tmp_path):
    from genlib.tracking import TrackingUnavailableError, check_tracking

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(TrackingUnavailableError, match="cannot create"):
        check_tracking(f"sqlite:///{blocker / 'sub' / 'mlflow.db'}")


# --- gates ----------------------------------------------------------------------------------------


GOOD = {"baseline_sq_err_per_image": 36.0, "test_sq_err_per_image": 8.0, "test_mse": 0.01, "test_loss": 280.0,
        "fid": 30.0, "fid_real_floor": 1.0, "class_accuracy": 0.9, "test_pseudo_log_likelihood": -150.0,
        "ais_log_likelihood": -180.0, "baseline_bernoulli_log_likelihood": -290.0, "recognised": 0.9,
        "precision": 0.8, "recall": 0.5}


@pytest.mark.parametrize("name", ["ae", "conv-ae", "dae", "vae", "cvae", "gan", "cgan", "rbm"])
def test_every_family_passes_good_metrics_and_fails_nan(name):
    from genlib.tracking.gates import check_gates, first_failure

    assert first_failure(check_gates(name, GOOD)) is None
    from genlib.models import get_model_class

    bad = {**GOOD, get_model_class(name).primary_metric: math.nan}
    failed = first_failure(check_gates(name, bad))
    assert failed is not None and failed.gate == "finite"


def test_gates_follow_capabilities():
    from genlib.tracking.gates import check_gates, first_failure

    # Without reference_* metrics (versions from before the data's reference row) the absolute rules apply;
    # tests/test_gates.py checks the relative ones.
    sample = ["recognition_without_coverage", "recognised", "precision", "recall", "fid"]
    assert [g.gate for g in check_gates("cgan", GOOD)] == ["finite", *sample, "class_accuracy"]
    assert [g.gate for g in check_gates("ae", GOOD)] == ["finite", "reconstruction"]
    assert [g.gate for g in check_gates("vae", GOOD)] == ["finite", "reconstruction", *sample]
    assert [g.gate for g in check_gates("rbm", GOOD)] == ["finite", "reconstruction", *sample, "likelihood"]
    assert first_failure(check_gates("vae", {**GOOD, "recognised": 0.2})).gate == "recognised"
    assert first_failure(check_gates("ae", {**GOOD, "test_sq_err_per_image": 30.0})).gate == "reconstruction"
    assert first_failure(check_gates("gan", {**GOOD, "fid": 60.0})).gate == "fid"  # max(30 x 1, 1 + 50) = 51
    assert first_failure(check_gates("gan", {**GOOD, "fid": 260.0, "fid_real_floor": 9.0})) is None  # 30 x 9
    # Grey blots (the CD-1 RBM of the digits default): nothing recognised, nothing on the real manifold.
    blots = {**GOOD, "recognised": 0.0, "precision": 0.0, "fid": 800.0, "fid_real_floor": 9.3}
    for name in ("rbm", "vae", "gan", "cgan"):
        assert not all(c.passed for c in check_gates(name, blots))
    assert first_failure(check_gates("rbm", {**GOOD, "recognised": 0.35})).gate == "recognised"
    assert first_failure(check_gates("gan", {**GOOD, "precision": 0.3})).gate == "precision"
    assert first_failure(check_gates("vae", {**GOOD, "recall": 0.01})).gate == "recall"
    assert first_failure(check_gates("rbm", {**GOOD, "fid": 60.0})).gate == "fid"
    assert first_failure(check_gates("rbm", {**GOOD, "ais_log_likelihood": -300.0})).gate == "likelihood"
    assert first_failure(check_gates("cgan", {**GOOD, "class_accuracy": 0.2})).gate == "class_accuracy"
    assert first_failure(check_gates("gan", {k: v for k, v in GOOD.items() if k != "fid"})).gate == "finite"


def test_champion_comparison_uses_primary_metric_direction():
    from genlib.tracking.gates import beats

    assert beats("vae", {"test_loss": 1.0}, {"test_loss": 2.0})[0]
    assert not beats("vae", {"test_loss": 2.0}, {"test_loss": 1.0})[0]
    assert beats("rbm", {"test_pseudo_log_likelihood": -1.0}, {"test_pseudo_log_likelihood": -2.0})[0]
    assert not beats("gan", {"fid": 2.0}, {"fid": 2.0})[0]  # a tie keeps the champion
    assert beats("gan", {"fid": 2.0}, None)[0]


def test_mean_image_baseline(tiny_data):
    from genlib.tracking.gates import data_baselines

    baselines = data_baselines(tiny_data)
    mean = tiny_data.x_train.mean(0)
    expected = float(((tiny_data.x_test - mean) ** 2).sum((1, 2, 3)).mean())
    assert baselines["baseline_sq_err_per_image"] == pytest.approx(expected, rel=1e-5)
    # Independent pixels, averaged over many stochastic binarisations of the test set (Monte Carlo).
    p = tiny_data.x_train.double().mean(0).clamp(1e-3, 1 - 1e-3)
    gen = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(400):
        v = torch.bernoulli(tiny_data.x_test.double(), generator=gen)
        draws.append((v * p.log() + (1 - v) * (1 - p).log()).sum((1, 2, 3)).mean())
    assert baselines["baseline_bernoulli_log_likelihood"] == pytest.approx(float(torch.stack(draws).mean()), rel=0.01)


# --- callback, pyfunc, registry (real server) -------------------------------------------------------


@pytest.fixture(scope="module")
def logged_vae(mlflow_server, tiny_data):
    """A 2-epoch vae trained with the MLflow callback and logged as a pyfunc model on the server."""
    import mlflow

    from genlib.tracking import MLflowCallback, ensure_experiment, log_genlib_model
    from genlib.training import TrainConfig, config_for_data, save_checkpoint, train_model

    mlflow.set_tracking_uri(mlflow_server)
    experiment_id = ensure_experiment(_unique("cb-"))
    with mlflow.start_run(experiment_id=experiment_id) as run:
        cb = MLflowCallback(run.info.run_id, tiny_data.x_test, tiny_data.y_test, image_every=1)
        config = config_for_data("vae", tiny_data, {"hidden_dims": (64,), "latent_dim": 4})
        trained = train_model(config, tiny_data, TrainConfig(epochs=2), device="cpu", callbacks=[cb])
        path = save_checkpoint(SCRATCH / f"{run.info.run_id}.pt", trained.model)
        info = log_genlib_model(path, trained.model, tiny_data.x_test)
    return run.info.run_id, info, trained


def test_callback_logs_every_loss_term_per_epoch_grids_and_curves(tracking, logged_vae):
    from mlflow import MlflowClient

    run_id, _, trained = logged_vae
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params["model.latent_dim"] == "4" and run.data.params["train.epochs"] == "2"
    for term in ("loss", "recon", "kl"):
        for split in ("train", "val"):
            history = client.get_metric_history(run_id, f"{split}_{term}")
            assert [m.step for m in history] == [1, 2]
    files = {a.path for a in client.list_artifacts(run_id, "snapshots")}
    files |= {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"snapshots/reconstructions.png", "snapshots/samples.png", "snapshots/epoch_001_samples.png",
            "plots/loss_curves.png"} <= files


def test_pyfunc_reconstructs_and_generates_and_genlib_loads_same_weights(tracking, logged_vae, tiny_data):
    import mlflow

    from genlib.tracking import load_genlib_model

    _, info, trained = logged_vae
    model = mlflow.pyfunc.load_model(info.model_uri)
    assert model.metadata.signature is not None and model.metadata.get_params_schema() is not None
    x = tiny_data.x_test[:3].numpy()
    recon = model.predict(x)
    assert recon.shape == (3, 1, 28, 28) and recon.dtype == np.float32
    gen = model.predict(np.empty((0, 1, 28, 28), np.float32), params={"n": 5, "seed": 1})
    again = model.predict(np.empty((0, 1, 28, 28), np.float32), params={"n": 5, "seed": 1})
    assert gen.shape == (5, 1, 28, 28) and np.array_equal(gen, again)

    loaded = load_genlib_model(info.model_uri)
    ref = trained.model.cpu().eval()
    for k, v in ref.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    with torch.no_grad():
        expected = ref.sample(5, generator=torch.Generator().manual_seed(1)).numpy()
    np.testing.assert_allclose(gen, expected, atol=1e-6)


def test_register_moves_champion_only_when_gates_pass_and_it_beats_the_champion(tracking, logged_vae):
    from genlib.tracking.registry import list_registry, register_version

    run_id, info, _ = logged_vae
    dataset = _unique("reg")
    first = register_version(info.model_uri, run_id, "vae", dataset, "d" * 64, {**GOOD, "test_loss": 300.0})
    assert first.created and first.promoted and set(first.aliases) == {"champion", "challenger"}
    again = register_version(info.model_uri, run_id, "vae", dataset, "d" * 64, {**GOOD, "test_loss": 300.0})
    assert not again.created and again.version == first.version  # same run: same version

    # A second training run: worse -> challenger only; gate failure -> challenger only; better -> champion.
    import mlflow

    def new_run() -> str:
        with mlflow.start_run(experiment_id=mlflow.get_run(run_id).info.experiment_id) as r:
            pass
        return r.info.run_id

    worse = register_version(info.model_uri, new_run(), "vae", dataset, "d" * 64, {**GOOD, "test_loss": 400.0})
    assert not worse.promoted and worse.aliases == ("challenger",) and "does not beat" in worse.reason
    failing = register_version(info.model_uri, new_run(), "vae", dataset, "d" * 64,
                               {**GOOD, "test_loss": 100.0, "test_sq_err_per_image": 35.0})
    assert not failing.promoted and "gate reconstruction failed" in failing.reason
    better = register_version(info.model_uri, new_run(), "vae", dataset, "d" * 64, {**GOOD, "test_loss": 200.0})
    assert better.promoted

    entry = next(m for m in list_registry() if m["name"] == first.name)
    assert entry["aliases"] == {"champion": better.version, "challenger": better.version}
    v1 = next(v for v in entry["versions"] if v["version"] == first.version)
    assert v1["dataset_digest"] == "d" * 64 and v1["metrics"]["test_loss"] == 300.0


def test_promote_refusals_move_nothing(tracking, logged_vae):
    from mlflow import MlflowClient

    from genlib.tracking import GateFailedError, RegistryError
    from genlib.tracking.registry import promote, register_version

    run_id, info, _ = logged_vae
    dataset = _unique("promo")
    good = register_version(info.model_uri, run_id, "vae", dataset, "e" * 64, GOOD)
    import mlflow

    with mlflow.start_run(experiment_id=mlflow.get_run(run_id).info.experiment_id) as r:
        pass
    bad = register_version(info.model_uri, r.info.run_id, "vae", dataset, "e" * 64, {**GOOD, "test_mse": math.nan,
                                                                                     "test_sq_err_per_image": 99.0})
    name = good.name
    client = MlflowClient()

    def aliases() -> dict:
        return dict(client.get_registered_model(name).aliases)

    before = aliases()
    with pytest.raises(RegistryError, match="no registered model"):
        promote("genlib-nope-nothing", "1")
    with pytest.raises(RegistryError, match="has no version 99"):
        promote(name, "99")
    with pytest.raises(RegistryError, match="has no alias @staging"):
        promote(name, "staging")
    with pytest.raises(GateFailedError, match="gate reconstruction failed") as err:
        promote(name, bad.version)
    assert err.value.gate == "reconstruction" and isinstance(err.value, GenlibError)
    with pytest.raises(RegistryError, match="invalid alias"):
        promote(name, good.version, alias="latest")
    assert aliases() == before

    done = promote(name, "champion", alias="staging")  # a version given by its alias
    assert done.version == good.version and done.previous is None and aliases()["staging"] == good.version
    forced = promote(name, bad.version, force=True)
    assert forced.forced and aliases()["champion"] == bad.version


# --- tracked runs ---------------------------------------------------------------------------------


def test_tracked_runs_carry_standard_tags_and_nest_under_the_pipeline_run(tracking):
    import os
    import socket
    import threading

    from mlflow import MlflowClient

    from genlib.tracking import ensure_experiment
    from genlib.tracking import tags as T
    from genlib.tracking.runs import tracked_run

    client = MlflowClient()
    experiment_id = ensure_experiment(_unique("runs-"))
    assert client.get_experiment(experiment_id).tags[T.MLFLOW_EXPERIMENT_KIND] == T.CUSTOM_MODEL_DEVELOPMENT
    with tracked_run("pipeline", experiment_id=experiment_id, name="p", dataset="digits", digest="a" * 64,
                     prefect_flow_run_id="flow-1") as parent:
        with tracked_run("train", experiment_id=experiment_id, name="t", config_key="k1", device="cpu") as train:
            pass
        seen: list[str] = []
        # Prefect runs tasks in threads with a copy of the context: runs started there nest too.
        import contextvars

        def in_thread() -> None:
            with tracked_run("evaluation", experiment_id=experiment_id, name="e") as run_id:
                seen.append(run_id)

        ctx = contextvars.copy_context()
        thread = threading.Thread(target=ctx.run, args=(in_thread,))
        thread.start()
        thread.join()
    with tracked_run("data", experiment_id=experiment_id, name="d") as alone:
        pass
    p, t, e, d = (client.get_run(r) for r in (parent, train, seen[0], alone))
    assert p.data.tags[T.KIND] == "pipeline" and p.info.status == "FINISHED"
    assert p.data.tags[T.DATASET_DIGEST] == "a" * 64 and p.data.tags[T.PREFECT_FLOW_RUN_ID] == "flow-1"
    assert t.data.tags[T.KIND] == "train" and t.data.tags[T.CONFIG_KEY] == "k1" and t.data.tags[T.DEVICE] == "cpu"
    assert t.data.tags[T.PID] == str(os.getpid()) and t.data.tags[T.HOST] == socket.gethostname()
    assert t.data.tags[T.MLFLOW_PARENT_RUN_ID] == parent and e.data.tags[T.MLFLOW_PARENT_RUN_ID] == parent
    assert T.MLFLOW_PARENT_RUN_ID not in d.data.tags and T.MLFLOW_PARENT_RUN_ID not in p.data.tags
    # The UI opens the parent of an evaluation-type run expanded: the chart view compares the families.
    assert e.data.tags[T.MLFLOW_RUN_TYPE] == "evaluation"
    assert all(T.MLFLOW_RUN_TYPE not in r.data.tags for r in (p, t, d))


def test_tracked_run_ends_failed_on_errors_killed_on_interrupts_and_reopens(tracking):
    from mlflow import MlflowClient

    from genlib.tracking import ensure_experiment
    from genlib.tracking.runs import tracked_run

    client = MlflowClient()
    experiment_id = ensure_experiment(_unique("status-"))
    ids = {}
    for exc, key in ((ValueError("boom"), "failed"), (KeyboardInterrupt(), "killed")):
        with pytest.raises(type(exc)):
            with tracked_run("train", experiment_id=experiment_id, name=key) as run_id:
                ids[key] = run_id
                raise exc
    assert client.get_run(ids["failed"]).info.status == "FAILED"
    assert client.get_run(ids["killed"]).info.status == "KILLED"
    with pytest.raises(ValueError, match="unknown run kind"):
        with tracked_run("nope", experiment_id=experiment_id, name="x"):  # type: ignore[arg-type]
            pass
    # Reopening a run (a resumed training) continues the same run and ends it FINISHED.
    with tracked_run("train", experiment_id=experiment_id, name="again", run_id=ids["killed"]) as same:
        import mlflow

        mlflow.log_metric("resumed", 1.0)
    assert same == ids["killed"] and client.get_run(same).info.status == "FINISHED"
    assert client.get_run(same).data.metrics["resumed"] == 1.0
