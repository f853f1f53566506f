"""The papers' own methods: RBM pre-training unrolled into a deep autoencoder (Hinton & Salakhutdinov
2006), the IWAE objective (Burda et al. 2016), RBM schedules, and AIS against reverse annealing
(RAISE; Burda, Grosse & Salakhutdinov 2015) on a tiny RBM whose log Z is enumerated."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from genlib.errors import ConfigError
from genlib.evaluation import ais_log_partition, iwae_log_likelihood, raise_log_likelihood, vae_elbo
from genlib.models import get_model, make_config
from genlib.training import Callback, TrainConfig, fit
from genlib.training.pretrain import pretrain_autoencoder, stack_configs, stack_reconstruct, unroll

pytest.register_assert_rewrite("tests.services")
pytest_plugins = ["tests.services"]  # the session's real MLflow server, for the stage-run test

SHAPE = (1, 4, 4)


@dataclasses.dataclass
class TinyData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    name: str = "tiny"


def tiny_data(n: int = 64, seed: int = 0) -> TinyData:
    g = torch.Generator().manual_seed(seed)
    # Noisy copies of three prototypes: structure a stack and an autoencoder can learn.
    protos = torch.rand(3, *SHAPE, generator=g).round()
    pick = torch.randint(0, 3, (2 * n,), generator=g)
    x = (0.8 * protos[pick] + 0.2 * torch.rand(2 * n, *SHAPE, generator=g)).clamp(0, 1)
    y = torch.zeros(2 * n, dtype=torch.long)
    return TinyData(x[:n], y[:n], x[n:], y[n:])


def deep_ae(**extra):
    return get_model("ae", make_config("ae", {"image_shape": SHAPE, "hidden_dims": (12, 8), "latent_dim": 4,
                                              "activation": "sigmoid", "pretrain": "rbm", **extra}))


class Stages(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_stage_begin(self, name):
        self.events.append(f"begin {name}")

    def on_fit_begin(self, model, train_config):
        self.events.append(f"fit {getattr(model.config, 'hidden', model.name)}")

    def on_stage_end(self, name, result):
        self.events.append(f"end {name} {result.epochs_run}")


# --- RBM pre-training ----------------------------------------------------------------------------


def test_unrolled_stack_reconstructs_like_the_stack_mean_field():
    torch.manual_seed(0)
    rbms = [get_model("rbm", c) for c in stack_configs([16, 12, 8, 4], SHAPE)]
    with torch.no_grad():
        for rbm in rbms:  # away from the near-zero initialisation, so a wrong copy would show
            for p in rbm.parameters():
                p.normal_(0, 0.7)
    assert [r.config.hidden for r in rbms] == ["bernoulli", "bernoulli", "gaussian"]
    ae = deep_ae()
    x = torch.rand(10, *SHAPE)
    before = ae.reconstruct(x).detach()
    unroll(ae, rbms)
    expected = stack_reconstruct(rbms, x)
    assert torch.allclose(ae.reconstruct(x).detach(), expected, atol=1e-6)
    assert not torch.allclose(before, expected, atol=1e-2)
    # The code is linear: the encoder gives the Gaussian top layer's mean.
    h = rbms[1].hidden_probs(rbms[0].hidden_probs(x.flatten(1)))
    assert torch.allclose(ae.encode(x).detach(), h @ rbms[2].weight + rbms[2].hidden_bias, atol=1e-6)


def test_pretraining_trains_each_layer_as_a_stage_and_resumes_from_finished_stages(tmp_path):
    data = tiny_data()
    cb = Stages()
    torch.manual_seed(0)
    ae = deep_ae(pretrain_epochs=2)
    rbms = pretrain_autoencoder(ae, data, device="cpu", callbacks=[cb], checkpoint_dir=tmp_path)
    assert cb.events == ["begin rbm1_16x12", "fit bernoulli", "end rbm1_16x12 2",
                         "begin rbm2_12x8", "fit bernoulli", "end rbm2_12x8 2",
                         "begin rbm3_8x4", "fit gaussian", "end rbm3_8x4 2"]
    x = data.x_val[:8]
    assert torch.allclose(ae.reconstruct(x).detach(), stack_reconstruct(rbms, x), atol=1e-6)
    assert all((tmp_path / "pretrain" / f"stage_{i}" / "done.pt").is_file() for i in (1, 2, 3))
    # A second run finds every stage done: nothing is trained again and the weights are the same.
    again = Stages()
    torch.manual_seed(1)
    ae2 = deep_ae(pretrain_epochs=2)
    pretrain_autoencoder(ae2, data, device="cpu", callbacks=[again], checkpoint_dir=tmp_path)
    assert again.events == []
    assert torch.equal(ae2.reconstruct(x), ae.reconstruct(x))
    # Fine-tuning starts from the unrolled weights and lowers the reconstruction loss.
    with torch.no_grad():
        start = float(ae.loss(data.x_val).loss)
    fit(ae, data, TrainConfig(epochs=5, batch_size=16), device="cpu")
    with torch.no_grad():
        assert float(ae.loss(data.x_val).loss) < start


def test_train_model_pretrains_when_the_config_asks():
    from genlib.training import train_model

    cb = Stages()
    trained = train_model(deep_ae(pretrain_epochs=1).config, tiny_data(), TrainConfig(epochs=1, batch_size=16),
                          device="cpu", callbacks=[cb])
    assert [e for e in cb.events if e.startswith("begin")] == ["begin rbm1_16x12", "begin rbm2_12x8", "begin rbm3_8x4"]
    assert cb.events[-1] == "fit ae" and trained.fit.epochs_run == 1


def test_no_pretraining_unless_asked_and_rbm_pretraining_needs_sigmoid_units():
    ae = get_model("ae", make_config("ae", {"image_shape": SHAPE, "hidden_dims": (8,), "latent_dim": 2}))
    assert pretrain_autoencoder(ae, tiny_data(), device="cpu") is None
    with pytest.raises(ConfigError, match="sigmoid"):
        make_config("ae", {"pretrain": "rbm", "activation": "relu"})


def test_stage_runs_are_mlflow_children_with_their_own_curves(tracking):
    import mlflow
    from mlflow import MlflowClient

    from genlib.tracking import MLflowCallback

    client = MlflowClient()
    experiment_id = client.create_experiment(f"stages-{torch.randint(0, 10**9, ()).item()}")
    data = tiny_data(32)
    with mlflow.start_run(experiment_id=experiment_id, run_name="deep-ae") as run:
        cb = MLflowCallback(run.info.run_id, data.x_val, data.y_val)
        torch.manual_seed(0)
        ae = deep_ae(pretrain_epochs=2)
        pretrain_autoencoder(ae, data, device="cpu", callbacks=[cb])
        fit(ae, data, TrainConfig(epochs=1, batch_size=16), device="cpu", callbacks=[cb])
    children = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    assert sorted(c.data.tags["genlib.stage"] for c in children) == ["rbm1_16x12", "rbm2_12x8", "rbm3_8x4"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(child.info.run_id, "train_recon")] == [1, 2]
        assert {a.path for a in client.list_artifacts(child.info.run_id, "plots")} == {"plots/loss_curves.png"}
    parent = client.get_run(run.info.run_id)
    assert parent.data.params["model.pretrain"] == "rbm"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1]


# --- RBM schedules and the Gaussian top layer -----------------------------------------------------------


def test_momentum_switch_learning_rate_decay_and_growing_cd_steps():
    rbm = get_model("rbm", make_config("rbm", {"image_shape": SHAPE, "hidden_units": 4, "lr": 0.1, "momentum": 0.5,
                                               "final_momentum": 0.9, "momentum_epochs": 2, "lr_decay": 1.0,
                                               "cd_k": 5, "cd_k_start": 1}))
    opt = rbm.configure_optimizers()
    seen = []
    for epoch in (1, 2, 3, 5):
        for g in opt["model"].param_groups:
            g["lr"] = 0.1  # what fit sets before the hook (constant schedule)
        rbm.begin_epoch(epoch, 5, opt)
        g = opt["model"].param_groups[0]
        seen.append((g["momentum"], round(g["lr"], 6), rbm.cd_k))
    assert seen == [(0.5, 0.1, 1), (0.5, 0.05, 2), (0.9, round(0.1 / 3, 6), 3), (0.9, 0.02, 5)]
    result = fit(rbm, tiny_data(16), TrainConfig(epochs=2, batch_size=8), device="cpu")
    assert result.epochs_run == 2 and rbm.cd_k == 5


def test_gaussian_hidden_free_energy_matches_numerical_integration():
    torch.manual_seed(0)
    rbm = get_model("rbm", make_config("rbm", {"image_shape": (1, 1, 3), "hidden_units": 1, "hidden": "gaussian"}))
    with torch.no_grad():
        for p in rbm.parameters():
            p.normal_(0, 1)
    v = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    h = torch.linspace(-30, 30, 200001, dtype=torch.float64)
    w, b, c = rbm.weight.double(), rbm.visible_bias.double(), rbm.hidden_bias.double()
    # -E(v, h) = v.b - (h - c)^2 / 2 + h (v W); integrate exp(-E) over h numerically.
    neg_energy = (v.double() @ b)[:, None] - 0.5 * (h[None] - c) ** 2 + h[None] * (v.double() @ w)
    log_int = torch.logsumexp(neg_energy, 1) + math.log(float(h[1] - h[0]))
    assert torch.allclose(-rbm.free_energy(v).double() + 0.5 * math.log(2 * math.pi), log_int, atol=1e-4)


# --- IWAE ---------------------------------------------------------------------------------------------


def tiny_vae(**extra):
    torch.manual_seed(0)
    return get_model("vae", make_config("vae", {"image_shape": SHAPE, "hidden_dims": (16,), "latent_dim": 3, **extra}))


def test_iwae_with_one_sample_is_the_elbo():
    vae = tiny_vae().eval()
    x = torch.bernoulli(torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        one = vae.iwae_loss(x, None, 1)
        # One draw: log w = log p(x|z) + log p(z) - log q(z|x), so the bound is exactly -(recon + kl).
        assert float(one.loss) == pytest.approx(float(one.recon + one.kl), abs=1e-5)
        torch.manual_seed(2)
        draws = torch.stack([iwae_log_likelihood(vae, x, k=1, chunk=1) for _ in range(4000)])
        torch.manual_seed(3)
        elbo = vae_elbo(vae, x, samples=4000)
    se = draws.std(0) / math.sqrt(draws.shape[0])
    assert torch.all((draws.mean(0) - elbo).abs() < 4 * se + 1e-3)
    # iwae_k=1 trains on the usual ELBO (analytic KL), iwae_k=k on the k-sample bound.
    assert make_config("vae", {}).iwae_k == 1


def test_iwae_bound_tightens_with_k_and_trains():
    vae = tiny_vae()
    x = torch.bernoulli(torch.rand(400, *SHAPE, generator=torch.Generator().manual_seed(4)))
    bounds = []
    with torch.no_grad():
        for k in (1, 5, 50):
            torch.manual_seed(5)
            bounds.append(float(iwae_log_likelihood(vae, x, k=k, chunk=10).mean()))
    assert bounds[0] < bounds[1] < bounds[2]
    iwae = tiny_vae(iwae_k=5)
    torch.manual_seed(6)
    with torch.no_grad():
        loss5 = float(iwae.loss(x).loss)
        torch.manual_seed(6)
        loss1 = float(tiny_vae().loss(x).loss)
    assert loss5 < loss1  # same weights: the 5-sample bound is tighter than the ELBO
    before = [p.detach().clone() for p in iwae.parameters()]
    data = TinyData(x[:64], torch.zeros(64, dtype=torch.long), x[64:96], torch.zeros(32, dtype=torch.long))
    result = fit(iwae, data, TrainConfig(epochs=1, batch_size=16), device="cpu")
    assert math.isfinite(result.history[-1]["train_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, iwae.parameters()))


# --- AIS and reverse annealing ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_rbm():
    """An RBM with 10 visible and 8 hidden units, strong enough weights to make annealing hard, and 300
    exact samples from it (by enumerating its 2^10 visible states)."""
    torch.manual_seed(0)
    rbm = get_model("rbm", make_config("rbm", {"image_shape": (1, 1, 10), "hidden_units": 8}))
    with torch.no_grad():
        rbm.weight.normal_(0, 1.5)
        rbm.visible_bias.normal_(0, 1.0)
        rbm.hidden_bias.normal_(0, 1.0)
    states = ((torch.arange(1024)[:, None] >> torch.arange(10)) & 1).float()
    log_p = rbm.log_likelihood_exact(states)
    idx = torch.multinomial(log_p.exp().float(), 300, replacement=True, generator=torch.Generator().manual_seed(1))
    v = states[idx]
    return rbm, v, rbm.log_likelihood_exact(v), float(rbm.log_partition_exact())


def test_reverse_ais_brackets_the_exact_log_likelihood_from_below_and_ais_from_above(tiny_rbm):
    rbm, v, exact, log_z = tiny_rbm
    base = torch.zeros(10)
    args = (rbm.weight.detach(), rbm.visible_bias.detach(), rbm.hidden_bias.detach())
    # Short schedules, so that both estimators are visibly biased, in opposite directions.
    log_zs = [ais_log_partition(*args, n_chains=5, n_betas=20, base_visible_bias=base, seed=s).log_z for s in range(40)]
    ais_ll = float((-rbm.free_energy(v).double()).mean()) - sum(log_zs) / len(log_zs)
    raise_ll = float(raise_log_likelihood(*args, v, n_betas=20, base_visible_bias=base, seed=0).mean())
    assert raise_ll < float(exact.mean()) < ais_ll
    assert ais_ll - raise_ll < 5.0
    # A long schedule closes the bracket.
    long_z = ais_log_partition(*args, n_chains=50, n_betas=2000, seed=0).log_z
    long_raise = float(raise_log_likelihood(*args, v, n_betas=2000, seed=0).mean())
    assert long_z == pytest.approx(log_z, abs=0.1)
    assert long_raise == pytest.approx(float(exact.mean()), abs=0.3)
    assert long_raise < float(exact.mean()) + 0.05


def test_explicit_schedules_are_checked():
    args = (torch.zeros(3, 2), torch.zeros(3), torch.zeros(2))
    # A zero RBM is the uniform base model: any schedule gives log Z exactly.
    res = ais_log_partition(*args, n_chains=3, betas=[0.0, 0.3, 1.0])
    assert res.log_z == pytest.approx(5 * math.log(2))
    with pytest.raises(ValueError, match="increase"):
        ais_log_partition(*args, betas=[0.0, 0.6, 0.5, 1.0])
    est = raise_log_likelihood(*args, torch.ones(4, 3), betas=torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(est, torch.full((4,), -3 * math.log(2), dtype=torch.float64))
