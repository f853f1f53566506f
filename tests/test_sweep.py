"""``genlib sweep``: the typed search spaces, bad input (one line, exit 2, nothing written), the pruning
callback against a real Optuna storage, resuming a killed sweep, and (real services) a sweep whose trials land
nested under one MLflow run, continued by the same parameters, with a failing trial recorded and skipped."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest

from genlib.errors import ConfigError
from genlib.models import list_models
from genlib.spec import resolve_spec
from genlib.sweep import study as S
from genlib.sweep.spaces import SPACES, Choice, FloatRange, IntRange, parse_space_option, resolve_space
from genlib.sweep.refs import PRUNED_AT, PrunerSettings, TrialRef
from genlib.sweep.trial import PruningCallback, TrialPrunedError

pytest.register_assert_rewrite("tests.services")
from tests.services import SMALL_DATA, TINY_EVAL  # noqa: E402

pytest_plugins = ["tests.services"]  # the session's MLflow server and Prefect harness (real-service test)

# --- spaces ------------------------------------------------------------------------------------------


def test_every_family_has_a_valid_space_that_contains_its_quick_preset():
    assert set(SPACES) == set(list_models())
    for family in list_models():
        space = resolve_space(family)  # checks every field and bound against the family's config
        preset = S.preset_params(space, resolve_spec("quick", family))
        assert set(preset) == set(space.params), f"{family}: preset outside its space: {set(space.params) - set(preset)}"


def test_space_options_parse_to_typed_ranges_and_pins_leave_the_space():
    assert parse_space_option("lr=1e-4:1e-2:log", "ae") == ("model.lr", FloatRange(low=1e-4, high=1e-2, log=True))
    assert parse_space_option("train.epochs=2:4", "ae") == ("train.epochs", IntRange(low=2, high=4))
    assert parse_space_option("model.hidden_dims=[[64,32],[32,16]]", "ae")[1] == Choice(choices=((64, 32), (32, 16)))
    space = resolve_space("ae", space_items=["latent_dim=4,8"], pins={"train": {"epochs": 1}}, metric="val_loss")
    assert space.params["model.latent_dim"] == Choice(choices=(4, 8)) and "train.epochs" not in space.params
    assert (space.metric, space.direction, space.prune_on) == ("val_loss", "minimize", "val_loss")
    rbm = resolve_space("rbm", metric="ais_log_likelihood")  # an evaluation metric, higher is better
    assert rbm.direction == "maximize" and rbm.prune_on == "val_pseudo_log_likelihood"


@pytest.mark.parametrize("item, message", [
    ("model.nope=1:2", "unknown field 'model.nope'"),
    ("model.lr=0.1:0.01", "empty range"),
    ("model.lr=0:0.1:log", "log range needs low > 0"),
    ("model.latent_dim=[]", "no choices"),
    ("model.latent_dim=0:4", "is not a valid value"),
    ("evaluation.fid_samples=10:20", "evaluation setting"),
    ("model.lr", "expected FIELD=LOW:HIGH"),
])
def test_bad_space_is_one_config_error(item, message):
    with pytest.raises(ConfigError, match=message):
        resolve_space("ae", space_items=[item])


def _genlib(args: list[str], env_dir) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(GENLIB_MLFLOW_DIR=str(env_dir / "mlflow"), PREFECT_HOME=str(env_dir / "prefect"),
               GENLIB_OPTUNA_STORAGE="", GENLIB_STACK_DIR=str(env_dir / "stack"))
    return subprocess.run([sys.executable, "-m", "genlib.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args, message", [
    (["ae", "--trials", "0"], "--trials"),
    (["ae", "--parallel", "0"], "--parallel"),
    (["ae", "--space", "model.nope=1:2"], "unknown field"),
    (["ae", "--space", "model.lr=0.1:0.01"], "empty range"),
    (["ae", "--set", "model.nope=3"], "unknown field"),
    (["nope"], "unknown model"),
    (["ae", "--study", "never-made", "--resume"], "no study 'never-made'"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    done = _genlib(["sweep", *args, "--dataset", "digits"], tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert not any(tmp_path.iterdir()), list(tmp_path.rglob("*"))  # no store, study, Prefect home


def test_the_deployment_form_is_typed_and_refuses_bad_values():
    from prefect.utilities.callables import parameter_schema
    from pydantic import ValidationError

    from flows.sweep import sweep
    from flows.sweep_params import SweepParams

    props = parameter_schema(sweep).model_dump()["definitions"]["SweepParams"]["properties"]
    assert props["trials"]["minimum"] == 1 and props["parallel"]["minimum"] == 1
    assert set(list_models()) <= set(json_enum(props["family"]))
    SweepParams(family="ae", space=props["space"]["examples"][0], overrides=props["overrides"]["examples"][0])
    for bad in ({"trials": 0}, {"parallel": 0}, {"space": ["model.lr=0.1:0.01"]}, {"space": ["model.nope=1:2"]},
                {"overrides": {"model": {"nope": 1}}}, {"metric": ""}):
        with pytest.raises(ValidationError):
            SweepParams(family="ae", **bad)


def json_enum(prop: dict) -> list:
    """The choices of a schema property (inline, or behind a reference Prefect's schema leaves in place)."""
    return prop.get("enum") or next((p["enum"] for p in prop.get("allOf", []) + prop.get("anyOf", []) if "enum" in p), [])


def test_list_shows_every_space_without_importing_torch_prefect_or_mlflow():
    code = ("import sys\nfrom genlib.cli import main\ntry:\n    main(['sweep', '--list'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'prefect', 'mlflow', 'optuna') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    for family, space in SPACES.items():
        assert f"{family}: {space.direction} {space.metric}" in done.stdout
        assert all(field in done.stdout for field in space.params)


# --- the study ---------------------------------------------------------------------------------------


def _study(tmp_path, name="s"):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = S.open_storage(url)
    space = resolve_space("ae")
    return url, storage, S.open_study(name, storage, space, "digits", PrunerSettings(n_startup_trials=2,
                                                                                      n_warmup_steps=0))


class _Cfg:
    epochs = 5


def test_the_pruning_callback_reports_each_epoch_and_stops_a_pruned_trial(tmp_path):
    url, storage, study = _study(tmp_path)
    for _ in range(2):  # two finished trials at 1.0 every epoch: the median
        t = study.ask()
        for step in range(1, 6):
            t.report(1.0, step)
        study.tell(t, 1.0)
    good, bad = study.ask(), study.ask()
    refs = [TrialRef(study="s", number=t.number, trial_id=S.trial_id(storage, "s", t.number), storage=url,
                     prune_on="val_loss", pruner=PrunerSettings(n_startup_trials=2, n_warmup_steps=0))
            for t in (good, bad)]
    ok = PruningCallback(refs[0])
    ok.on_fit_begin(None, _Cfg)
    for epoch in range(1, 6):
        ok.on_epoch_end(epoch, {"val_loss": 0.5}, None)  # better than the median: never pruned
    cb = PruningCallback(refs[1])
    cb.on_fit_begin(None, _Cfg)
    with pytest.raises(TrialPrunedError) as err:
        cb.on_epoch_end(1, {"val_loss": 9.0}, None)
    assert err.value.epoch == 1 and err.value.run_status == "KILLED"
    frozen = study.get_trials()[bad.number]
    assert frozen.intermediate_values == {1: 9.0} and frozen.user_attrs[PRUNED_AT] == 1
    assert S.pruned_at(refs[1]) == 1 and S.pruned_at(refs[0]) is None
    assert study.get_trials()[good.number].intermediate_values == {e: 0.5 for e in range(1, 6)}


def test_an_unknown_metric_fails_the_trial_naming_the_metrics_there(tmp_path):
    url, storage, study = _study(tmp_path)
    t = study.ask()
    cb = PruningCallback(TrialRef(study="s", number=t.number, trial_id=S.trial_id(storage, "s", t.number),
                                  storage=url, prune_on="val_nope"))
    cb.on_fit_begin(None, _Cfg)
    with pytest.raises(ConfigError, match="val_nope.*val_loss"):
        cb.on_epoch_end(1, {"val_loss": 1.0, "train_loss": 1.0}, None)


def test_a_killed_sweeps_trials_are_failed_and_their_settings_queued_again(tmp_path):
    url, storage, study = _study(tmp_path)
    space = resolve_space("ae")
    assert S.enqueue_preset(study, space, resolve_spec("quick", "ae"))
    assert not S.enqueue_preset(study, space, resolve_spec("quick", "ae"))  # only into an empty study
    trial = study.ask(S.distributions(space))
    assert trial.user_attrs[S.ATTR_PRESET] and trial.params["model.latent_dim"] == 32
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    S.mark_started(trial, 10)
    trial.set_user_attr(S.ATTR_PID, dead.pid)  # as left by a driver that was killed
    alive = study.ask(S.distributions(space))
    S.mark_started(alive, 10)  # this process: still running, left alone
    assert S.recover_interrupted(study) == [trial.number]
    states = [t.state for t in study.get_trials()]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING]
    again = study.ask(S.distributions(space))  # the queued copy comes first
    assert again.number == 2 and again.params == trial.params


def test_a_study_made_for_another_metric_is_refused(tmp_path):
    url, storage, _ = _study(tmp_path, "x")
    with pytest.raises(ConfigError, match="was made for metric"):
        S.open_study("x", storage, resolve_space("ae", metric="val_loss"), "digits", PrunerSettings())


def test_storage_sits_beside_the_tracking_store(tmp_path, monkeypatch):
    monkeypatch.delenv(S.STORAGE_ENV, raising=False)
    monkeypatch.delenv("MLFLOW_BACKEND_STORE_URI", raising=False)
    assert S.resolve_storage(f"sqlite:///{tmp_path}/m/mlflow.db") == f"sqlite:///{tmp_path}/m/optuna.db"
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", f"sqlite:///{tmp_path}/srv/mlflow.db")
    assert S.resolve_storage("http://127.0.0.1:5000") == f"sqlite:///{tmp_path}/srv/optuna.db"
    monkeypatch.setenv(S.STORAGE_ENV, "postgresql://genlib:secret@db/optuna")
    assert S.resolve_storage() == "postgresql://genlib:secret@db/optuna"
    assert S.redact(S.resolve_storage()) == "postgresql://genlib:***@db/optuna"
    assert S.shareable(S.resolve_storage()) is None


# --- real services: the flow -----------------------------------------------------------------------------


def test_sweep_nests_its_trials_registers_the_best_and_continues(tracking, prefect_api, tmp_path, monkeypatch):
    """Two trials (the preset, then one that raises) under one sweep run; the same parameters again add a
    third trial under the same run. About 40 s: small networks, 2 epochs on 600 digits. It owns the cvae in
    the session's tracking server (tests/test_flows.py's tests own the other families' runs and versions)."""
    from mlflow import MlflowClient

    import flows.train
    from flows.params import DataParams
    from flows.sweep import sweep
    from flows.sweep_params import SweepParams
    from genlib.spec import Overrides

    real = flows.train.train_family

    def flaky(params, digest):  # trial 1 raises: recorded failed, the sweep goes on
        if params.trial is not None and params.trial.number == 1:
            raise RuntimeError("a trial that raises")
        return real(params, digest)

    monkeypatch.setattr(flows.train, "train_family", flaky)
    params = SweepParams(family="cvae", data=DataParams(**SMALL_DATA), trials=2, parallel=1, device="cpu",
                         dispatch="local", storage=f"sqlite:///{tmp_path / 'optuna.db'}", study="test-sweep-cvae",
                         overrides=Overrides(model={"hidden_dims": (64, 32)}, train={"epochs": 2},
                                             evaluation=TINY_EVAL))
    first = sweep(params)
    assert [(t.number, t.state) for t in first.trials] == [(0, "complete"), (1, "failed")]
    assert first.trials[0].preset and "a trial that raises" in first.trials[1].error
    assert first.best_number == 0 and first.preset_value == first.best_value
    assert first.registration is not None and first.registration.name == "genlib-cvae-digits"
    second = sweep(params.model_copy(update={"trials": 1}))
    assert second.run_id == first.run_id and second.total_trials == 3 and second.trials[0].number == 2

    client = MlflowClient()
    parent = client.get_run(first.run_id)
    assert parent.data.tags["genlib.kind"] == "sweep" and "won" in parent.data.tags["mlflow.note.content"]
    assert parent.data.metrics["trials"] == 3.0
    plots = {a.path for a in client.list_artifacts(first.run_id, "plots")}
    assert "plots/optimization_history.png" in plots
    trials = client.search_runs([parent.info.experiment_id],
                                f"tags.`mlflow.parentRunId` = '{first.run_id}' and tags.`genlib.kind` = 'train'")
    states = {r.data.tags["genlib.sweep.trial"]: r.data.tags.get("genlib.sweep.trial_state") for r in trials}
    assert states == {"0": "complete", "2": "complete"}  # trial 1 raised before its run started
    version = client.get_model_version("genlib-cvae-digits", first.registration.version)
    assert version.run_id in {r.info.run_id for r in trials}


def test_the_benchmark_table_compares_best_and_preset_and_the_worker_counts():
    import argparse

    from bench.sweep import render

    def result(best: float, wall_trials: list[str]) -> dict:
        return {"trials": [{"state": s} for s in wall_trials], "epochs_saved": 7, "metric": "val_loss",
                "best_value": best, "best_number": 3, "preset_value": 100.0,
                "best_metrics": {"test_loss": 90.0, "recognised": 0.8, "precision": 0.7, "fid": 20.0},
                "preset_metrics": {"test_loss": 99.0, "recognised": 0.6, "precision": 0.5, "fid": 30.0}}

    rows = [{"family": "vae", "workers": 1, "wall": 200.0, "result": result(95.0, ["complete", "pruned"])},
            {"family": "vae", "workers": 2, "wall": 125.0, "result": result(94.0, ["complete", "failed"])}]
    args = argparse.Namespace(trials=2, set=None, n_train=10000, n_val=2000, dataset="mnist")
    text = render(rows, args)
    assert "| vae | 1 | 200 s | 1 / 1 / 0 | 7 | val_loss 95 (#3) vs 100 | test_loss 90 vs 99 | 0.8 vs 0.6 |" in text
    assert "vae 1.60x" in text and text.startswith("<!-- sweep:begin -->") and text.endswith("<!-- sweep:end -->")
