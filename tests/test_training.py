"""The shared ``fit`` loop: history, callbacks, early stopping, exact resume, divergence, devices, progress."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from genlib.errors import ConfigError, DataError, TrainingDivergedError
from genlib.models import get_model, make_config
from genlib.training import (
    Callback,
    TrainConfig,
    config_for_data,
    evaluate,
    fit,
    load_checkpoint,
    resolve_device,
    train_model,
)
from genlib.training.loop import _Progress, lr_factor, num_batches


SHAPE = (1, 8, 8)
TINY: dict[str, dict] = {
    "ae": {"hidden_dims": (16,), "latent_dim": 4},
    "vae": {"hidden_dims": (16,), "latent_dim": 3},
    "gan": {"latent_dim": 4, "generator_features": 4, "discriminator_features": 4},
    "rbm": {"hidden_units": 8},
}


@dataclasses.dataclass
class TinyData:
    """Just the fields ``fit`` and ``train_model`` read from a DataSplits."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 3
    name: str = "tiny"


def tiny_data(n_train: int = 24, n_val: int = 8, seed: int = 0) -> TinyData:
    g = torch.Generator().manual_seed(seed)

    def split(n):
        return torch.rand(n, *SHAPE, generator=g), torch.randint(0, 3, (n,), generator=g)

    return TinyData(*split(n_train), *split(n_val), *split(n_val))


def tiny_model(name: str, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return get_model(name, make_config(name, {"image_shape": SHAPE, "num_classes": 3, **TINY[name], **extra}))


def states_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.metrics: list[dict[str, float]] = []
        self.states: dict[int, dict[str, torch.Tensor]] = {}
        self.result = None

    def on_fit_begin(self, model, train_config):
        self.calls.append("begin")
        self.train_config = train_config

    def on_epoch_end(self, epoch, metrics, model):
        self.calls.append(f"epoch {epoch}")
        self.metrics.append(dict(metrics))
        self.states[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_fit_end(self, result):
        self.calls.append("end")
        self.result = result


EXPECTED_TERMS = {
    "ae": {"loss", "recon"},
    "vae": {"loss", "recon", "kl"},
    "gan": {"loss", "d_loss", "g_loss", "d_real", "d_fake"},
    "rbm": {"loss", "recon", "free_energy_gap"},
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_history_has_one_entry_per_epoch_with_every_term(name):
    model = tiny_model(name)
    result = fit(model, tiny_data(), TrainConfig(epochs=2, batch_size=8), device="cpu", progress=False)
    assert result.epochs_run == 2 and len(result.history) == 2
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.device == "cpu" and not result.stopped_early and result.model is model
    for entry in result.history:
        terms = EXPECTED_TERMS[name]
        assert {f"train_{t}" for t in terms} <= set(entry)
        assert {f"val_{t}" for t in terms} <= set(entry)
        if model.reconstructs:
            assert {"val_mse", "val_sq_err_per_image"} <= set(entry)
            assert entry["val_sq_err_per_image"] == pytest.approx(entry["val_mse"] * 64)
        if name == "rbm":
            assert "val_pseudo_log_likelihood" in entry
        assert all(math.isfinite(v) for v in entry.values())


@pytest.mark.parametrize("n,batch_size,expected", [(24, 8, 3), (25, 8, 3), (26, 8, 4), (1, 8, 1), (9, 8, 1), (8, 8, 1)])
def test_num_batches_folds_a_last_batch_of_one(n, batch_size, expected):
    assert num_batches(n, batch_size) == expected


@pytest.mark.parametrize("name", ["gan", "ae"])
def test_a_last_batch_of_one_example_is_trained_with_the_one_before(name, monkeypatch):
    # BatchNorm cannot train on a single example: 25 = 8 + 8 + 9, not 8 + 8 + 8 + 1.
    model = tiny_model(name)
    sizes = []
    original = model.training_step

    def step(x, y, optimizers, autocast):
        sizes.append(len(x))
        return original(x, y, optimizers, autocast)

    monkeypatch.setattr(model, "training_step", step)
    result = fit(model, tiny_data(n_train=25), TrainConfig(epochs=2, batch_size=8), device="cpu")
    assert sizes == [8, 8, 9, 8, 8, 9]
    assert all(math.isfinite(v) for v in result.history[-1].values())


def test_evaluate_averages_over_the_whole_split_whatever_the_batch_size():
    model = tiny_model("ae")
    data = tiny_data(n_val=10)
    one = evaluate(model, data.x_val, data.y_val, torch.device("cpu"), batch_size=10)
    many = evaluate(model, data.x_val, data.y_val, torch.device("cpu"), batch_size=3)
    assert one.keys() == many.keys()
    for k in one:
        assert many[k] == pytest.approx(one[k], rel=1e-5)
    with torch.no_grad():
        mse = (model.reconstruct(data.x_val) - data.x_val).pow(2).mean().item()
    assert one["val_mse"] == pytest.approx(mse, rel=1e-5)


def test_callbacks_receive_every_hook_in_order():
    rec = Recorder()
    result = fit(tiny_model("ae"), tiny_data(), TrainConfig(epochs=3, batch_size=8), device="cpu", callbacks=[rec])
    assert rec.calls == ["begin", "epoch 1", "epoch 2", "epoch 3", "end"]
    assert rec.train_config.epochs == 3
    assert rec.metrics == result.history
    assert rec.result is result


def _worsening_data() -> TinyData:
    """Train on black images and validate on white ones: every epoch makes the val loss worse."""
    data = tiny_data()
    return dataclasses.replace(data, x_train=torch.zeros_like(data.x_train), x_val=torch.ones_like(data.x_val))


def test_early_stopping_stops_and_restores_the_best_weights():
    rec = Recorder()
    model = tiny_model("ae", lr=1e-2)
    cfg = TrainConfig(epochs=10, batch_size=8, patience=2)
    result = fit(model, _worsening_data(), cfg, device="cpu", callbacks=[rec])
    val = [h["val_loss"] for h in result.history]
    assert val[1] > val[0] and val[2] > val[1]  # the set-up really worsens
    assert result.stopped_early
    assert result.epochs_run == 3 and rec.calls[-2:] == ["epoch 3", "end"]
    assert result.best_epoch == 1
    best = rec.states[1]
    final = model.state_dict()
    assert all(torch.equal(final[k], best[k]) for k in best)
    assert not all(torch.equal(rec.states[3][k], best[k]) for k in best)
    # The restored model scores the best validation loss again.
    data = _worsening_data()
    again = evaluate(model, data.x_val, data.y_val, torch.device("cpu"))
    assert again["val_loss"] == pytest.approx(val[0], rel=1e-5)


def test_without_patience_training_runs_every_epoch_and_keeps_the_last_weights():
    rec = Recorder()
    model = tiny_model("ae", lr=1e-2)
    result = fit(model, _worsening_data(), TrainConfig(epochs=3, batch_size=8), device="cpu", callbacks=[rec])
    assert result.epochs_run == 3 and not result.stopped_early
    assert all(torch.equal(model.state_dict()[k], v) for k, v in rec.states[3].items())


def test_min_delta_counts_small_improvements_as_no_improvement():
    rec = Recorder()
    data = tiny_data()
    model = tiny_model("ae", lr=1e-3)
    result = fit(model, data, TrainConfig(epochs=5, batch_size=8, patience=1, min_delta=1e9), device="cpu",
                 callbacks=[rec])
    assert result.stopped_early and result.epochs_run == 2 and result.best_epoch == 1
    assert all(torch.equal(model.state_dict()[k], v) for k, v in rec.states[1].items())


RESUME_CASES = {
    "ae": ("ae", {}),
    "vae": ("vae", {}),
    "gan": ("gan", {}),
    "gan-self-conditioned": ("gan", {"clusters": 3}),  # the clusters come from the checkpoint, not re-fitted
    "rbm": ("rbm", {}),
    "rbm-persistent": ("rbm", {"persistent": True}),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resumed_run_matches_an_uninterrupted_one_exactly(case, tmp_path):
    name, extra = RESUME_CASES[case]
    data = tiny_data()  # 24 = 3 batches of 8: the persistent chain carries over epoch boundaries

    whole = tiny_model(name, **extra)
    full = fit(whole, data, TrainConfig(epochs=4, batch_size=8, seed=5), device="cpu")

    first = tiny_model(name, **extra)
    ckpt_dir = tmp_path / "ckpt"
    fit(first, data, TrainConfig(epochs=2, batch_size=8, seed=5, checkpoint_every=1), device="cpu",
        checkpoint_dir=ckpt_dir)
    assert load_checkpoint(ckpt_dir / "last.pt").epoch == 2

    # A fresh process would rebuild the model from another seed: the checkpoint must carry everything.
    resumed_model = tiny_model(name, seed=123, **extra)
    rec = Recorder()
    resumed = fit(resumed_model, data, TrainConfig(epochs=4, batch_size=8, seed=5, checkpoint_every=1),
                  device="cpu", checkpoint_dir=ckpt_dir, resume_from=ckpt_dir / "last.pt", callbacks=[rec])

    assert rec.calls == ["begin", "epoch 3", "epoch 4", "end"]
    assert resumed.epochs_run == 4
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.history == full.history
    assert states_equal(resumed_model, whole)
    if extra.get("persistent"):
        assert resumed_model.persistent_chain.shape == (8, 8)  # (chains, hidden units)
        assert torch.equal(resumed_model.persistent_chain, whole.persistent_chain)
    assert load_checkpoint(ckpt_dir / "last.pt").epoch == 4


def test_cosine_schedule_starts_at_the_configured_rate_and_decays_towards_zero():
    cfg = TrainConfig(epochs=5, lr_schedule="cosine")
    factors = [lr_factor(cfg, e) for e in range(1, 6)]
    assert factors[0] == 1.0
    assert all(a > b for a, b in zip(factors, factors[1:]))
    assert 0 < factors[-1] < 0.1
    assert lr_factor(TrainConfig(epochs=5), 5) == 1.0  # constant is the default


def test_cosine_schedule_sets_every_optimizers_rate_each_epoch():
    rec_lrs: list[list[float]] = []

    class LrRecorder(Callback):
        def on_epoch_end(self, epoch, metrics, model):
            rec_lrs.append([g["lr"] for opt in self.opts.values() for g in opt.param_groups])

    model = tiny_model("gan")  # two optimizers
    original = model.configure_optimizers
    recorder = LrRecorder()

    def capture():
        recorder.opts = original()
        return recorder.opts

    model.configure_optimizers = capture
    fit(model, tiny_data(), TrainConfig(epochs=3, batch_size=8, lr_schedule="cosine"), device="cpu", callbacks=[recorder])
    base = model.config.lr
    assert len(rec_lrs) == 3 and all(len(lrs) == 2 for lrs in rec_lrs)
    for epoch, lrs in enumerate(rec_lrs, start=1):
        assert lrs == pytest.approx([base * lr_factor(TrainConfig(epochs=3, lr_schedule="cosine"), epoch)] * 2)


def test_resumed_cosine_run_matches_an_uninterrupted_one_exactly(tmp_path):
    data = tiny_data()
    cfg = TrainConfig(epochs=4, batch_size=8, seed=5, checkpoint_every=1, lr_schedule="cosine")
    whole = tiny_model("ae")
    full = fit(whole, data, cfg, device="cpu")

    class Crash(Callback):
        def on_epoch_end(self, epoch, metrics, model):
            if epoch == 3:  # after epoch 2's checkpoint, before epoch 3's
                raise KeyboardInterrupt

    ckpt_dir = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model("ae"), data, cfg, device="cpu", checkpoint_dir=ckpt_dir, callbacks=[Crash()])
    assert load_checkpoint(ckpt_dir / "last.pt").epoch == 2
    resumed_model = tiny_model("ae", seed=123)
    resumed = fit(resumed_model, data, cfg, device="cpu", checkpoint_dir=ckpt_dir, resume_from=ckpt_dir / "last.pt")
    assert resumed.history == full.history
    assert states_equal(resumed_model, whole)


def test_resume_with_early_stopping_state_restores_the_same_best_weights(tmp_path):
    data = _worsening_data()
    whole = tiny_model("ae", lr=1e-2)
    full = fit(whole, data, TrainConfig(epochs=6, batch_size=8, patience=3), device="cpu")
    part = tiny_model("ae", lr=1e-2)
    fit(part, data, TrainConfig(epochs=2, batch_size=8, patience=3, checkpoint_every=1), device="cpu",
        checkpoint_dir=tmp_path)
    resumed_model = tiny_model("ae", seed=9, lr=1e-2)
    resumed = fit(resumed_model, data, TrainConfig(epochs=6, batch_size=8, patience=3), device="cpu",
                  resume_from=tmp_path / "last.pt")
    assert full.stopped_early and resumed.stopped_early
    assert resumed.best_epoch == full.best_epoch == 1 and resumed.epochs_run == full.epochs_run == 4
    assert states_equal(resumed_model, whole)


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    data = tiny_data()
    fit(tiny_model("ae"), data, TrainConfig(epochs=1, batch_size=8, checkpoint_every=1), device="cpu",
        checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError):
        fit(tiny_model("ae", latent_dim=5), data, TrainConfig(epochs=2, batch_size=8), device="cpu",
            resume_from=tmp_path / "last.pt")


def test_same_seed_gives_the_same_run_and_another_seed_does_not():
    data = tiny_data()
    runs = [fit(tiny_model("vae"), data, TrainConfig(epochs=2, batch_size=8, seed=s), device="cpu") for s in (1, 1, 2)]
    assert runs[0].history == runs[1].history
    assert states_equal(runs[0].model, runs[1].model)
    assert runs[0].history != runs[2].history


def _nan_loss(model, monkeypatch, from_call: int = 1):
    """Make the model's loss NaN from its ``from_call``-th call on (while keeping the graph for backward)."""
    original = model.loss
    calls = {"n": 0}

    def loss(x, y=None):
        calls["n"] += 1
        out = original(x, y)
        if calls["n"] >= from_call:
            return dataclasses.replace(out, loss=out.loss * float("nan"))
        return out

    monkeypatch.setattr(model, "loss", loss)


def test_nan_loss_raises_and_saves_nothing(tmp_path, monkeypatch):
    model = tiny_model("ae")
    _nan_loss(model, monkeypatch)
    rec = Recorder()
    with pytest.raises(TrainingDivergedError, match="epoch 1"):
        fit(model, tiny_data(), TrainConfig(epochs=3, batch_size=8, checkpoint_every=1), device="cpu",
            checkpoint_dir=tmp_path / "ckpt", callbacks=[rec])
    assert not (tmp_path / "ckpt").exists() or not any((tmp_path / "ckpt").iterdir())
    assert rec.calls == ["begin"]  # no epoch was reported as done, no fit end


def test_divergence_in_a_later_epoch_keeps_only_the_last_good_checkpoint(tmp_path, monkeypatch):
    model = tiny_model("ae")
    # 3 train batches + 1 val batch per epoch: call 5 is the first training batch of epoch 2.
    _nan_loss(model, monkeypatch, from_call=5)
    with pytest.raises(TrainingDivergedError, match="epoch 2"):
        fit(model, tiny_data(), TrainConfig(epochs=3, batch_size=8, checkpoint_every=1), device="cpu",
            checkpoint_dir=tmp_path)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.epoch == 1
    assert all(torch.isfinite(v).all() for v in ckpt.model.state_dict().values())
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary files left behind


def test_huge_learning_rate_diverges_with_a_clear_error():
    model = tiny_model("vae", lr=1e10)
    with pytest.raises(TrainingDivergedError, match="diverged"):
        fit(model, tiny_data(), TrainConfig(epochs=5, batch_size=8), device="cpu")


@pytest.mark.parametrize("which", ["train", "val"])
def test_fit_refuses_an_empty_split_before_training(which):
    data = tiny_data()
    empty = dataclasses.replace(data, **{f"x_{which}": torch.zeros(0, *SHAPE), f"y_{which}": torch.zeros(0).long()})
    rec = Recorder()
    with pytest.raises(DataError, match=f"{which} split is empty"):
        fit(tiny_model("ae"), empty, TrainConfig(epochs=1), device="cpu", callbacks=[rec])
    assert rec.calls == []


def test_train_model_refuses_an_empty_validation_split_before_training():
    data = tiny_data()
    empty = dataclasses.replace(data, x_val=torch.zeros(0, *SHAPE), y_val=torch.zeros(0).long())
    rec = Recorder()
    with pytest.raises(DataError, match="val split is empty"):
        train_model(config_for_data("ae", empty, TINY["ae"]), empty, TrainConfig(epochs=1), device="cpu",
                    callbacks=[rec])
    assert rec.calls == []


def test_fit_refuses_data_of_another_shape():
    data = tiny_data()
    wrong = dataclasses.replace(data, x_train=torch.rand(24, 1, 4, 4))
    with pytest.raises(ConfigError, match="image_shape"):
        fit(tiny_model("ae"), wrong, TrainConfig(epochs=1), device="cpu")


def test_train_model_from_a_resolved_spec_is_seeded_and_reports_no_test_metrics():
    from genlib.evaluation.model_eval import test_metrics
    from genlib.spec import data_shape, resolve_spec

    data = tiny_data()
    spec = resolve_spec("quick", "ae", {"model": TINY["ae"], "train": {"epochs": 1, "batch_size": 8}}, data_shape(data))
    assert spec.model.image_shape == SHAPE and spec.model.num_classes == 3
    trained = train_model(spec.model, data, spec.train, device="cpu", progress=False)
    assert not any(k.startswith("test_") for row in trained.fit.history for k in row)  # evaluation's job
    metrics = test_metrics(trained.model, data, device="cpu")
    assert {"test_loss", "test_recon", "test_mse", "test_sq_err_per_image"} <= set(metrics)
    again = train_model(spec.model, data, spec.train, device="cpu", progress=False)
    assert test_metrics(again.model, data, device="cpu") == metrics  # seeded: the initial weights too


def test_train_model_refuses_a_config_for_another_image_shape():
    data = tiny_data()
    with pytest.raises(ConfigError, match="image_shape"):
        train_model(make_config("ae", TINY["ae"]), data, TrainConfig(epochs=1), device="cpu")


# --- devices ------------------------------------------------------------------------------------------


def test_auto_device_is_cpu_without_cuda():
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="cuda"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="cuda"):
        fit(tiny_model("ae"), tiny_data(), TrainConfig(epochs=1), device="cuda")


@pytest.mark.parametrize("bad", ["gpu", "tpu0", "", "cuda:x"])
def test_unknown_device_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="device"):
        resolve_device(bad)


# --- progress -----------------------------------------------------------------------------------------


def test_progress_bar_is_silent_when_stderr_is_not_a_terminal(capsys):
    fit(tiny_model("ae"), tiny_data(), TrainConfig(epochs=2, batch_size=8), device="cpu")  # progress=None: auto
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_bar_writes_when_enabled(capsys):
    fit(tiny_model("ae"), tiny_data(), TrainConfig(epochs=2, batch_size=8), device="cpu", progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "3/3" in err
    bar = _Progress(4, "x", enabled=False)
    bar.update(2)
    bar.close("done")
    assert capsys.readouterr().err == ""
