"""The VAE's written-out ELBO gradient (genlib/models/vae_step.py) against autograd's, and where it applies."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import pytest
import torch

from genlib.models import get_model, make_config
from genlib.models.base import GenerativeModel
from genlib.models.vae_step import elbo_step, elbo_step_applies


class _NoStep:
    """An optimizer that leaves the parameters alone, so the gradients the step wrote can be read."""

    def step(self) -> None:
        pass


def _model(name: str = "vae", **overrides):
    torch.manual_seed(0)
    cfg = make_config(name, dict(image_shape=(1, 6, 5), hidden_dims=(7, 5), latent_dim=3, **overrides))
    model = get_model(name, cfg)
    model.train()
    return model


def _batch(n: int = 9, binary: bool = True):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 6, 5, generator=g)
    return (x < 0.4).float() if binary else x, torch.randint(0, 10, (n,), generator=g)


def _autograd_gradients(model, x, y):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    out = model.loss(x, y if model.conditional else None)
    out.loss.backward()
    return out, [p.grad.clone() for p in model.parameters()]


def _written_gradients(model, x, y):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    out = elbo_step(model, x, y if model.conditional else None, _NoStep())
    return out, [p.grad.clone() for p in model.parameters()]


CASES = [
    dict(name="vae", activation="tanh", decoder="bernoulli"),
    dict(name="vae", activation="relu", decoder="bernoulli"),
    dict(name="vae", activation="tanh", decoder="gaussian", decoder_sigma=0.3),
    dict(name="vae", activation="relu", decoder="bernoulli", beta=0.25, binarize=True),
    dict(name="cvae", activation="tanh", decoder="bernoulli"),
    dict(name="cvae", activation="relu", decoder="gaussian", beta=2.0),
    dict(name="vae", activation="relu", decoder="bernoulli", prior="mog", prior_components=4),
    dict(name="vae", activation="tanh", decoder="gaussian", prior="mog", prior_components=3, beta=0.5),
    dict(name="cvae", activation="relu", decoder="bernoulli", prior="mog", prior_components=5),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_written_out_gradient_equals_autograds(case):
    case = dict(case)
    model = _model(case.pop("name"), **case)
    assert elbo_step_applies(model)
    x, y = _batch(binary=case.get("decoder") == "bernoulli" and not case.get("binarize"))
    auto_out, auto = _autograd_gradients(model, x, y)
    out, written = _written_gradients(model, x, y)
    for term in ("loss", "recon", "kl"):
        assert float(getattr(out, term)) == pytest.approx(float(getattr(auto_out, term).detach()), rel=1e-5, abs=1e-5)
    for (name, p), a, w in zip(model.named_parameters(), auto, written):
        assert w.shape == p.shape
        assert torch.allclose(w, a, rtol=1e-4, atol=1e-6), name


def test_no_gradient_flows_through_a_clamped_log_variance():
    model = _model()
    with torch.no_grad():  # push the first latent's log-variance past the clamp at 20, the second's below -30
        last = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias[3] += 40.0
        last.bias[4] -= 60.0
    x, y = _batch()
    _, auto = _autograd_gradients(model, x, y)
    _, written = _written_gradients(model, x, y)
    bias_index = [n for n, _ in model.named_parameters()].index("encoder.0.4.bias")
    assert written[bias_index][3] == 0 and written[bias_index][4] == 0
    assert auto[bias_index][3] == 0 and auto[bias_index][4] == 0
    for a, w in zip(auto, written):
        assert torch.allclose(w, a, rtol=1e-4, atol=1e-6)


def test_no_gradient_flows_through_a_clamped_prior_log_variance():
    model = _model(prior="mog", prior_components=3)
    with torch.no_grad():
        model.prior_logvars[0, 1], model.prior_logvars[2, 0] = 25.0, -35.0  # past the clamp at 20 and at -30
    x, y = _batch()
    _, auto = _autograd_gradients(model, x, y)
    _, written = _written_gradients(model, x, y)
    grad = dict(zip([n for n, _ in model.named_parameters()], written))["prior_logvars"]
    assert grad[0, 1] == 0 and grad[2, 0] == 0 and grad.abs().sum() > 0
    for a, w in zip(auto, written):
        assert torch.allclose(w, a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("prior", ["normal", "mog"])
def test_training_through_either_path_gives_the_same_model(prior):
    written = _model(prior=prior)
    auto = copy.deepcopy(written)
    opt_w, opt_a = written.configure_optimizers(), auto.configure_optimizers()
    x, y = _batch(32)
    for step in range(25):
        torch.manual_seed(step)
        written.training_step(x, y, opt_w, nullcontext())  # the VAE's own step: the written-out gradient
        torch.manual_seed(step)
        GenerativeModel.training_step(auto, x, y, opt_a, nullcontext())  # the autograd step
    for (name, a), w in zip(auto.named_parameters(), written.parameters()):
        assert torch.allclose(w, a, rtol=1e-4, atol=1e-5), name
    assert not torch.equal(written.decoder[0].weight, _model(prior=prior).decoder[0].weight)  # it trained


@pytest.mark.parametrize("overrides", [dict(encoder="conv", channels=(2, 2)), dict(prior="vamp"), dict(iwae_k=3)])
def test_other_configurations_train_through_autograd(overrides, monkeypatch):
    import genlib.models.vae as vae_module

    shape = (1, 8, 8) if overrides.get("encoder") == "conv" else (1, 6, 5)
    torch.manual_seed(0)
    model = get_model("vae", make_config("vae", dict(image_shape=shape, hidden_dims=(7,), latent_dim=3, **overrides)))
    assert not elbo_step_applies(model)
    monkeypatch.setattr(vae_module, "elbo_step", lambda *a: pytest.fail("the written-out step was used"))
    x = (torch.rand(4, *shape) < 0.4).float()
    out = model.training_step(x, torch.zeros(4, dtype=torch.long), model.configure_optimizers(), nullcontext())
    assert torch.isfinite(out.loss)


def test_frozen_parameters_train_through_autograd(monkeypatch):
    import genlib.models.vae as vae_module

    model = _model()
    model.encoder.requires_grad_(False)
    monkeypatch.setattr(vae_module, "elbo_step", lambda *a: pytest.fail("the written-out step was used"))
    before = [p.clone() for p in model.encoder.parameters()]
    x, y = _batch()
    model.training_step(x, y, model.configure_optimizers(), nullcontext())
    assert all(torch.equal(b, p) for b, p in zip(before, model.encoder.parameters()))
