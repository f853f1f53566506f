"""Per-family maths: VAE KL and ELBO, RBM energies versus brute force, CD learning, noise, DAE and GAN losses,
the GAN generator's moving average and the cGAN's per-class discriminator bias."""

from __future__ import annotations

import itertools
import math
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F

from genlib.errors import ConfigError
from genlib.models import get_model, make_config
from genlib.models.autoencoders import add_noise, reconstruction_loss
from genlib.models.vae import gaussian_kl, log_normal


# --- VAE ----------------------------------------------------------------------------------------------


def test_gaussian_kl_matches_a_monte_carlo_estimate():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 4, generator=g, dtype=torch.float64)
    logvar = torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.8
    n = 200_000
    z = mu + torch.randn(n, 3, 4, generator=g, dtype=torch.float64) * (0.5 * logvar).exp()
    # KL(q || p) = E_q[log q(z) - log p(z)]
    log_q = (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp())).sum(-1)
    log_p = (-0.5 * (math.log(2 * math.pi) + z**2)).sum(-1)
    diff = log_q - log_p  # (n, 3)
    mc, mc_std = diff.mean(0), diff.std(0) / math.sqrt(n)
    closed = gaussian_kl(mu, logvar)
    assert closed.shape == (3,)
    assert torch.all((closed - mc).abs() < 5 * mc_std), (closed, mc, mc_std)


def test_gaussian_kl_is_zero_only_at_the_prior():
    zeros = torch.zeros(2, 5)
    assert torch.allclose(gaussian_kl(zeros, zeros), torch.zeros(2))
    assert torch.all(gaussian_kl(torch.full((2, 5), 0.3), zeros) > 0)
    assert torch.all(gaussian_kl(zeros, torch.full((2, 5), -0.5)) > 0)
    # KL of independent latents adds up: one latent at mu=1 gives exactly 0.5 nats.
    mu = torch.zeros(1, 5)
    mu[0, 2] = 1.0
    assert gaussian_kl(mu, torch.zeros(1, 5)).item() == pytest.approx(0.5)


def test_log_normal_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    z, mu, logvar = (torch.randn(4, 3, generator=g) for _ in range(3))
    expected = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    assert torch.allclose(log_normal(z, mu, logvar), expected, atol=1e-5)


def _tiny_vae(**extra):
    torch.manual_seed(0)
    config = make_config("vae", {"image_shape": (1, 4, 4), "hidden_dims": (8,), "latent_dim": 3, **extra})
    return get_model("vae", config)


@pytest.mark.parametrize("beta", [1.0, 0.25])
def test_vae_negative_elbo_decomposes(beta):
    model = _tiny_vae(beta=beta)
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(7)
    out = model.loss(x)
    assert out.loss.item() == pytest.approx(out.recon.item() + beta * out.kl.item(), rel=1e-6)

    # Recompute each term by hand with the same reparameterisation noise.
    torch.manual_seed(7)
    mu, logvar = model.encode_dist(x)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    logits = model.decode_logits(z)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
    kl = gaussian_kl(mu, logvar).mean()
    assert out.recon.item() == pytest.approx(recon.item(), rel=1e-5)
    assert out.kl.item() == pytest.approx(kl.item(), rel=1e-5)
    assert out.kl.item() > 0


def test_vae_gaussian_decoder_log_likelihood():
    model = _tiny_vae(decoder="gaussian", decoder_sigma=0.5)
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    mean = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    expected = torch.distributions.Normal(mean, 0.5).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(model.log_px_given_z(mean, x), expected, atol=1e-4)


def test_importance_weights_bound_is_below_zero_and_tightens_with_k():
    # For binary x under a Bernoulli decoder, log p(x) <= 0; the IWAE bound rises with k on average.
    model = _tiny_vae()
    x = (torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    torch.manual_seed(0)
    w1 = model.log_importance_weights(x, k=1)
    wk = model.log_importance_weights(x, k=500)
    assert w1.shape == (1, 4) and wk.shape == (500, 4)
    elbo = wk.mean(0)
    iwae = torch.logsumexp(wk, 0) - math.log(500)
    assert torch.all(iwae <= 0)
    assert torch.all(iwae >= elbo)


@pytest.mark.parametrize("prior", ["mog", "vamp"])
def test_learned_priors_are_normalised_densities(prior):
    # In one latent dimension the density integrates to 1 on a fine grid.
    torch.manual_seed(0)
    model = get_model("vae", make_config("vae", {"image_shape": (1, 4, 4), "hidden_dims": (8,), "latent_dim": 1,
                                                 "prior": prior, "prior_components": 4}))
    with torch.no_grad():
        if prior == "mog":
            model.prior_means.copy_(torch.tensor([[-3.0], [0.0], [1.0], [4.0]]))
            model.prior_logvars.copy_(torch.tensor([[0.5], [-1.0], [0.0], [-2.0]]))
    z = torch.linspace(-30, 30, 600_001).unsqueeze(-1)
    with torch.no_grad():
        density = model.log_prior(z).double().exp()
    assert float(torch.trapezoid(density, z.squeeze(-1).double())) == pytest.approx(1.0, abs=1e-4)


def test_mog_prior_is_the_equal_mixture_of_its_components():
    model = _tiny_vae(prior="mog", prior_components=3)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    mu, logvar = model.prior_means.detach(), model.prior_logvars.detach()
    comps = torch.distributions.Independent(torch.distributions.Normal(mu, (0.5 * logvar).exp()), 1)
    mixture = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(torch.ones(3)), comps)
    assert torch.allclose(model.log_prior(z), mixture.log_prob(z), atol=1e-5)


def test_vamp_prior_is_the_mixture_of_posteriors_at_the_pseudo_inputs():
    model = _tiny_vae(prior="vamp", prior_components=3)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    mu, logvar = model.encode_dist(torch.sigmoid(model.pseudo_inputs))
    per = torch.stack([log_normal(z, mu[k].expand_as(z), logvar[k].expand_as(z)) for k in range(3)], -1)
    assert torch.allclose(model.log_prior(z), torch.logsumexp(per, -1) - math.log(3), atol=1e-5)


def test_a_learned_prior_with_one_standard_component_gives_the_closed_form_kl_on_average():
    model = _tiny_vae(prior="mog", prior_components=1)
    with torch.no_grad():
        model.prior_means.zero_()
        model.prior_logvars.zero_()
    g = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(3, 3, generator=g), torch.randn(3, 3, generator=g) * 0.5
    z = mu + torch.randn(100_000, 3, 3, generator=g) * (0.5 * logvar).exp()
    mc = model.kl_term(mu.expand(100_000, -1, -1), logvar.expand(100_000, -1, -1), z)
    assert not model.kl_closed_form
    assert torch.allclose(mc.mean(0), gaussian_kl(mu, logvar), atol=0.02)
    assert _tiny_vae().kl_closed_form


@pytest.mark.parametrize("prior", ["mog", "vamp"])
def test_learned_prior_elbo_uses_the_model_prior_everywhere(prior):
    from genlib.evaluation import vae_elbo

    model = _tiny_vae(prior=prior, prior_components=3)
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(7)
    out = model.loss(x)
    torch.manual_seed(7)
    mu, logvar = model.encode_dist(x)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    kl = (log_normal(z, mu, logvar) - model.log_prior(z)).mean()
    assert out.kl.item() == pytest.approx(kl.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(out.recon.item() + out.kl.item(), rel=1e-6)
    # The evaluation ELBO and the importance weights are log p(x|z) + log p(z) - log q(z|x) under this prior.
    torch.manual_seed(3)
    elbo = vae_elbo(model, x, samples=1)
    torch.manual_seed(3)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    by_hand = model.log_px_given_z(model.decode_logits(z), x) + model.log_prior(z) - log_normal(z, mu, logvar)
    assert torch.allclose(elbo.float(), by_hand, atol=1e-4)
    torch.manual_seed(4)
    w = model.log_importance_weights(x, k=1)[0]
    torch.manual_seed(4)
    eps = torch.randn(1, *mu.shape)[0]
    z = mu + eps * (0.5 * logvar).exp()
    by_hand = model.log_px_given_z(model.decode_logits(z), x) + model.log_prior(z) - log_normal(z, mu, logvar)
    assert torch.allclose(w, by_hand, atol=1e-4)


def test_mog_prior_samples_come_from_the_mixture(monkeypatch):
    model = _tiny_vae(prior="mog", prior_components=2)
    with torch.no_grad():
        model.prior_means.copy_(torch.tensor([[-5.0, 0.0, 0.0], [5.0, 0.0, 0.0]]))
        model.prior_logvars.copy_(torch.full((2, 3), math.log(0.25)))
    monkeypatch.setattr(model, "decode", lambda z, y=None: z)
    z = model.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert (z[:, 0] > 0).float().mean().item() == pytest.approx(0.5, abs=0.02)  # equal weights
    assert z[:, 0].abs().mean().item() == pytest.approx(5.0, abs=0.05)
    assert z[:, 1].std().item() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("prior", ["mog", "vamp"])
def test_learned_prior_trains_and_round_trips_through_a_checkpoint(prior, tmp_path):
    from genlib.training import load_checkpoint, save_checkpoint

    model = _tiny_vae(prior=prior, prior_components=3)
    opt = model.configure_optimizers()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    model.training_step(torch.rand(6, 1, 4, 4), torch.zeros(6, dtype=torch.long), opt, nullcontext())
    assert all(not torch.equal(before[k], p) for k, p in model.named_parameters())
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model)).model
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(model.eval().sample(4, generator=g()), loaded.eval().sample(4, generator=g()))


def test_cvae_refuses_the_vamp_prior():
    from genlib.errors import ConfigError

    with pytest.raises(ConfigError, match="prior"):
        make_config("cvae", {"prior": "vamp"})
    assert make_config("cvae", {"prior": "mog"}).prior == "mog"


# --- RBM ----------------------------------------------------------------------------------------------


def _tiny_rbm(n_vis: int = 6, n_hid: int = 4, seed: int = 0, **extra):
    """RBM with n_vis = 1 x 1 x n_vis visible units and O(1) random weights (so the tests are not trivial)."""
    torch.manual_seed(seed)
    model = get_model("rbm", make_config("rbm", {"image_shape": (1, 1, n_vis), "hidden_units": n_hid, **extra}))
    with torch.no_grad():
        model.weight.normal_(0, 1.0)
        model.visible_bias.normal_(0, 0.5)
        model.hidden_bias.normal_(0, 0.5)
    return model


def _binary(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _energy(model, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """E(v, h) = -v.b_v - h.b_h - v W h for every pair: v (A, V), h (B, H) -> (A, B)."""
    w, bv, bh = (p.detach().double() for p in (model.weight, model.visible_bias, model.hidden_bias))
    return -(v @ bv)[:, None] - (h @ bh)[None, :] - (v @ w @ h.T)


@pytest.mark.parametrize("n_vis,n_hid", [(6, 4), (4, 6)])
def test_rbm_free_energy_matches_brute_force(n_vis, n_hid):
    model = _tiny_rbm(n_vis, n_hid)
    v, h = _binary(n_vis), _binary(n_hid)
    brute = -torch.logsumexp(-_energy(model, v, h), dim=1)  # F(v) = -log sum_h exp(-E(v, h))
    assert torch.allclose(model.free_energy(v.float()).double(), brute, atol=1e-4)


@pytest.mark.parametrize("n_vis,n_hid", [(6, 4), (4, 6)])  # both enumeration branches of log Z
def test_rbm_log_partition_matches_brute_force_over_both_layers(n_vis, n_hid):
    model = _tiny_rbm(n_vis, n_hid)
    brute = torch.logsumexp(-_energy(model, _binary(n_vis), _binary(n_hid)).flatten(), 0)
    assert model.log_partition_exact().item() == pytest.approx(brute.item(), abs=1e-6)


@pytest.mark.parametrize("n_vis,n_hid", [(6, 4), (4, 6)])
def test_rbm_exact_likelihood_is_a_distribution(n_vis, n_hid):
    model = _tiny_rbm(n_vis, n_hid)
    v = _binary(n_vis).float().view(-1, 1, 1, n_vis)
    logp = model.log_likelihood_exact(v)
    assert logp.shape == (2**n_vis,) and logp.dtype == torch.float64
    assert torch.all(logp < 0)
    assert torch.logsumexp(logp, 0).exp().item() == pytest.approx(1.0, abs=1e-9)
    # Grey levels are thresholded at 0.5.
    assert torch.equal(model.log_likelihood_exact(v * 0.4 + 0.3), logp)


def test_rbm_exact_log_partition_refuses_large_layers():
    torch.manual_seed(0)
    model = get_model("rbm", make_config("rbm", {"image_shape": (1, 5, 5), "hidden_units": 21}))
    with pytest.raises(ValueError, match="20"):
        model.log_partition_exact()


def test_rbm_conditionals_match_the_joint():
    model = _tiny_rbm(6, 4)
    v, h = _binary(6), _binary(4)
    joint = torch.softmax(-_energy(model, v, h).flatten(), 0).view(len(v), len(h))
    p_h_given_v = joint / joint.sum(1, keepdim=True)
    expected = p_h_given_v @ h  # E[h_j | v] = p(h_j = 1 | v)
    assert torch.allclose(model.hidden_probs(v.float()).double(), expected, atol=1e-5)
    p_v_given_h = joint / joint.sum(0, keepdim=True)
    assert torch.allclose(model.visible_probs(h.float()).double(), (p_v_given_h.T @ v), atol=1e-5)


def test_rbm_exact_pseudo_likelihood_matches_brute_force():
    model = _tiny_rbm(6, 4)
    states = _binary(6)
    logp = model.log_likelihood_exact(states.float().view(-1, 1, 1, 6))
    index = {tuple(int(b) for b in s): i for i, s in enumerate(states)}
    data = states[[3, 17, 40, 63]]
    expected = []
    for s in data:
        total = 0.0
        for i in range(6):
            flipped = s.clone()
            flipped[i] = 1 - flipped[i]
            a, b = logp[index[tuple(int(t) for t in s)]], logp[index[tuple(int(t) for t in flipped)]]
            total += (a - torch.logaddexp(a, b)).item()  # log p(v_i | v_-i)
        expected.append(total)
    got = model.pseudo_log_likelihood(data.float().view(-1, 1, 1, 6), exact=True)
    assert torch.allclose(got.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-4)

    # The stochastic estimate (one random bit, times V) is unbiased for it.
    many = data[:1].float().repeat(4000, 1).view(-1, 1, 1, 6)
    est = model.pseudo_log_likelihood(many, generator=torch.Generator().manual_seed(0))
    assert est.mean().item() == pytest.approx(expected[0], abs=5 * est.std().item() / math.sqrt(4000))


def test_cd_training_raises_the_data_likelihood():
    torch.manual_seed(0)
    model = get_model(
        "rbm", make_config("rbm", {"image_shape": (1, 1, 6), "hidden_units": 4, "lr": 0.5, "momentum": 0.5})
    )
    patterns = torch.tensor(
        [[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0], [1, 1, 0, 0, 1, 1]], dtype=torch.float32
    )
    data = patterns.repeat(4, 1).view(-1, 1, 1, 6)
    others = _binary(6).float()
    is_data = (others[:, None, :] == patterns[None]).all(-1).any(1)

    def stats():
        ll = model.log_likelihood_exact(data).mean().item()
        fe = model.free_energy(others)
        return ll, fe[is_data].mean().item() - fe[~is_data].mean().item()

    ll0, gap0 = stats()
    optimizers = model.configure_optimizers()
    for _ in range(60):
        out = model.training_step(data, torch.zeros(len(data), dtype=torch.long), optimizers, nullcontext())
        assert torch.isfinite(out.loss)
    ll1, gap1 = stats()
    assert ll1 > ll0 + 1.0, (ll0, ll1)  # uniform over 64 states is -4.16 nats; 4 patterns allow -1.39
    assert gap1 < gap0 - 1.0, (gap0, gap1)  # data free energy falls relative to the other states


def test_persistent_cd_keeps_its_chain_between_steps():
    torch.manual_seed(0)
    model = get_model("rbm", make_config("rbm", {"image_shape": (1, 1, 6), "hidden_units": 4, "persistent": True}))
    optimizers = model.configure_optimizers()
    x = torch.ones(8, 1, 1, 6)
    y = torch.zeros(8, dtype=torch.long)
    model.training_step(x, y, optimizers, nullcontext())
    # The chains' state is their hidden sample: (chains, hidden units).
    assert model.persistent_chain.shape == (8, 4)
    chain = model.persistent_chain.clone()
    # A smaller final batch must continue (a part of) the chain rather than restart it from noise.
    torch.manual_seed(1)
    model.training_step(x[:5], y[:5], optimizers, nullcontext())
    assert model.persistent_chain.shape == (8, 4)
    assert torch.equal(model.persistent_chain[5:], chain[5:])
    assert "persistent_chain" in model.state_dict()
    # A larger batch continues the existing chains and adds fresh ones for the extra rows.
    chain = model.persistent_chain.clone()
    seen = []
    original = model._products.down  # the step's h -> v product

    def recording(h, bias):
        seen.append(h.clone())
        return original(h, bias)

    model._products.down = recording
    xs, ys = torch.ones(11, 1, 1, 6), torch.zeros(11, dtype=torch.long)
    model.training_step(xs, ys, optimizers, nullcontext())
    assert model.persistent_chain.shape == (11, 4)
    # The h -> v product runs first for the monitor (from the data), then from the chains' state.
    assert len(seen) == 2
    assert torch.equal(seen[1][:8], chain)


# --- denoising autoencoder -------------------------------------------------------------------------


def _rate_tolerance(p: float, n: int) -> float:
    return 5 * math.sqrt(p * (1 - p) / n) + 1e-9


@pytest.mark.parametrize("level", [0.0, 0.25, 0.6])
def test_masking_noise_zeros_about_level_of_pixels(level):
    x = torch.full((50, 1, 20, 20), 0.7)
    noisy = add_noise(x, "masking", level, torch.Generator().manual_seed(0))
    assert noisy.shape == x.shape
    zero = noisy == 0
    assert torch.all(noisy[~zero] == 0.7)  # the rest untouched
    assert zero.float().mean().item() == pytest.approx(level, abs=_rate_tolerance(level, x.numel()))


@pytest.mark.parametrize("level", [0.0, 0.3, 1.0])
def test_salt_and_pepper_sets_about_level_to_zero_or_one(level):
    x = torch.full((50, 1, 20, 20), 0.5)
    noisy = add_noise(x, "salt_pepper", level, torch.Generator().manual_seed(0))
    changed = noisy != 0.5
    assert torch.all((noisy[changed] == 0) | (noisy[changed] == 1))
    assert changed.float().mean().item() == pytest.approx(level, abs=_rate_tolerance(level, x.numel()))
    if level > 0:
        salt = (noisy[changed] == 1).float().mean().item()
        assert salt == pytest.approx(0.5, abs=_rate_tolerance(0.5, int(changed.sum())))


def test_gaussian_noise_stays_in_unit_interval_and_has_the_right_scale():
    x = torch.full((50, 1, 20, 20), 0.5)
    noisy = add_noise(x, "gaussian", 0.1, torch.Generator().manual_seed(0))
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert (noisy - x).std().item() == pytest.approx(0.1, rel=0.05)
    edge = add_noise(torch.ones(4, 1, 8, 8), "gaussian", 0.5, torch.Generator().manual_seed(0))
    assert edge.min() >= 0 and edge.max() <= 1 and (edge < 1).any()


def test_noise_is_reproducible_and_refuses_unknown_kinds():
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for kind in ("gaussian", "masking", "salt_pepper"):
        a = add_noise(x, kind, 0.3, torch.Generator().manual_seed(3))
        b = add_noise(x, kind, 0.3, torch.Generator().manual_seed(3))
        assert torch.equal(a, b) and not torch.equal(a, x)
    with pytest.raises(ValueError, match="poisson"):
        add_noise(x, "poisson", 0.3)


@pytest.mark.parametrize("noise", ["masking", "salt_pepper", "gaussian"])
def test_dae_loss_uses_corrupted_inputs_and_clean_targets(noise):
    torch.manual_seed(0)
    config = make_config("dae", {"image_shape": (1, 6, 6), "hidden_dims": (8,), "latent_dim": 3, "noise": noise,
                                 "noise_level": 0.5})
    model = get_model("dae", config)
    with torch.no_grad():  # larger weights, so that the loss depends clearly on what the encoder sees
        for p in model.parameters():
            p.mul_(4)
    x = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(42)
    got = model.loss(x).loss
    torch.manual_seed(42)
    corrupted = add_noise(x, noise, 0.5)  # the same draws as the model's corruption
    with torch.no_grad():
        logits = model.decode_logits(model.encode(corrupted))
        expected = reconstruction_loss(logits, x, "bce").mean()
        corrupted_target = reconstruction_loss(logits, corrupted, "bce").mean()
        clean_input = reconstruction_loss(model.decode_logits(model.encode(x)), x, "bce").mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert got.item() != pytest.approx(corrupted_target.item(), rel=1e-3)
    assert got.item() != pytest.approx(clean_input.item(), rel=1e-3)
    # Reconstruction (used for evaluation and grids) sees the clean input.
    assert torch.equal(model.reconstruct(x), torch.sigmoid(model.decode_logits(model.encode(x))))


def test_reconstruction_losses_match_their_definitions():
    g = torch.Generator().manual_seed(0)
    logits, x = torch.randn(3, 1, 4, 4, generator=g), torch.rand(3, 1, 4, 4, generator=g)
    p = torch.sigmoid(logits)
    bce = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    assert torch.allclose(reconstruction_loss(logits, x, "bce"), bce, atol=1e-4)
    assert torch.allclose(reconstruction_loss(logits, x, "mse"), ((p - x) ** 2).flatten(1).sum(1), atol=1e-6)


# --- GAN ----------------------------------------------------------------------------------------------


def _tiny_gan(name: str = "gan", **extra):
    torch.manual_seed(0)
    config = make_config(name, {"image_shape": (1, 8, 8), "num_classes": 3, "latent_dim": 4,
                                "generator_features": 4, "discriminator_features": 4, **extra})
    return get_model(name, config)


@pytest.mark.parametrize("name", ["gan", "cgan"])
def test_gan_step_updates_both_networks_with_their_own_optimizers(name):
    model = _tiny_gan(name)
    optimizers = model.configure_optimizers()
    assert set(optimizers) == {"discriminator", "generator"}
    d_params = {id(p) for g in optimizers["discriminator"].param_groups for p in g["params"]}
    g_params = {id(p) for g in optimizers["generator"].param_groups for p in g["params"]}
    assert d_params == {id(p) for p in model.discriminator.parameters()}
    assert g_params == {id(p) for p in model.generator.parameters()}
    for opt in optimizers.values():
        assert opt.param_groups[0]["betas"] == (0.5, 0.999)

    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    g_before = [p.detach().clone() for p in model.generator.parameters()]
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    out = model.training_step(x, y, optimizers, nullcontext())
    assert all(not torch.equal(a, p) for a, p in zip(d_before, model.discriminator.parameters()))
    assert all(not torch.equal(a, p) for a, p in zip(g_before, model.generator.parameters()))
    assert out.loss.item() == pytest.approx(out.d_loss.item() + out.g_loss.item(), rel=1e-6)
    assert 0 < out.d_real.item() < 1 and 0 < out.d_fake.item() < 1
    # Each Adam has taken exactly one step.
    for opt in optimizers.values():
        steps = {int(s["step"]) for s in opt.state.values()}
        assert steps == {1}


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_discriminator_loss_is_the_bce_sum_on_fixed_logits(smoothing, monkeypatch):
    model = _tiny_gan(label_smoothing=smoothing)
    real_logits = torch.tensor([2.0, -1.0, 0.5, 0.0])
    fake_logits = torch.tensor([-0.3, 1.2, 0.0, -2.5])
    seen = []

    def fixed(x_pm1, y=None):
        seen.append(x_pm1)
        return real_logits if len(seen) == 1 else fake_logits

    monkeypatch.setattr(model, "discriminate", fixed)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    fake = model.generate(torch.randn(4, 4))
    d_loss, *_ = model._losses(x, None, fake)

    s = smoothing
    real_term = -((1 - s) * torch.log(torch.sigmoid(real_logits)) + s * torch.log(1 - torch.sigmoid(real_logits)))
    fake_term = -torch.log(1 - torch.sigmoid(fake_logits))
    assert d_loss.item() == pytest.approx((real_term.mean() + fake_term.mean()).item(), rel=1e-6)
    # Real images reach the discriminator on the generator's [-1, 1] scale; fakes are detached.
    assert torch.allclose(seen[0], x * 2 - 1)
    assert not seen[1].requires_grad and torch.equal(seen[1], fake.detach())


def test_generator_loss_is_non_saturating(monkeypatch):
    model = _tiny_gan()
    fake_logits = torch.tensor([-0.3, 1.2, 0.0, -2.5], requires_grad=True)
    monkeypatch.setattr(model, "discriminate", lambda x_pm1, y=None: fake_logits)
    out = model.loss(torch.rand(4, 1, 8, 8))
    expected = -torch.log(torch.sigmoid(fake_logits)).mean()  # -log D(G(z)), not log(1 - D(G(z)))
    assert out.g_loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_gan_refuses_a_batch_of_one_with_a_config_error():
    from genlib.errors import ConfigError

    model = _tiny_gan()
    with pytest.raises(ConfigError, match="batch_size"):
        model.training_step(torch.rand(1, 1, 8, 8), torch.zeros(1, dtype=torch.long), model.configure_optimizers(),
                            nullcontext())


def test_gan_moving_average_moves_toward_the_live_generator_by_one_minus_decay():
    model = _tiny_gan(ema_decay=0.9)
    assert not {id(p) for p in model.parameters()} & {id(b) for b in model.generator_ema.buffers()}
    assert any(k.startswith("generator_ema.") for k in model.state_dict())
    optimizers = model.configure_optimizers()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    model.ema_updates.fill_(10_000)  # past the warm-up: the decay is ema_decay itself
    before = {k: v.clone() for k, v in model.generator_ema.state_dict().items()}
    model.training_step(x, y, optimizers, nullcontext())
    live = model.generator.state_dict()
    for name, avg in model.generator_ema.state_dict().items():
        if "running" in name or "num_batches" in name:  # BatchNorm statistics are copied, not averaged
            assert torch.equal(avg, live[name]), name
        else:
            assert torch.allclose(avg, 0.9 * before[name] + 0.1 * live[name], atol=1e-7), name
    assert int(model.ema_updates) == 10_001


def test_gan_moving_average_warms_up_from_the_live_weights():
    # At update t the decay is min(ema_decay, (1 + t) / (10 + t)): 0.1 at the first step.
    model = _tiny_gan(ema_decay=0.999)
    before = {k: v.clone() for k, v in model.generator_ema.state_dict().items()}
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    model.update_ema()
    live = dict(model.generator.named_parameters())
    for name, avg in model.generator_ema.named_buffers():
        if name in live:
            assert torch.allclose(avg, 0.1 * before[name] + 0.9 * live[name], atol=1e-6), name


def test_gan_samples_come_from_the_average_and_decay_zero_uses_the_live_generator():
    plain = _tiny_gan(ema_decay=0.0)
    assert plain.generator_ema is None and not any("generator_ema" in k for k in plain.state_dict())
    z = torch.randn(4, 4, generator=torch.Generator().manual_seed(3))
    plain.eval()
    assert torch.equal(plain.generate(z, averaged=True), plain.generate(z))

    model = _tiny_gan(ema_decay=0.5).eval()
    assert torch.equal(model.generate(z, averaged=True), model.generate(z))  # starts as a copy
    with torch.no_grad():
        model.generator_ema.body[-2].bias.add_(0.3)
    assert not torch.equal(model.generate(z, averaged=True), model.generate(z))
    # sample() draws z from its generator and decodes it with the average.
    z0 = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    expected = (model.generate(z0, averaged=True) + 1) / 2
    assert torch.allclose(model.sample(4, generator=torch.Generator().manual_seed(0)), expected)


def test_gan_checkpoint_without_an_average_starts_it_at_the_live_weights():
    model = _tiny_gan()
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("generator_ema.") and k != "ema_updates"}
    with torch.no_grad():
        for p in model.generator_ema.buffers():
            p.zero_()
    model.load_state_dict(old)
    live = model.generator.state_dict()
    for name, avg in model.generator_ema.state_dict().items():
        assert torch.equal(avg, live[name]), name


def _two_blobs(n: int = 40) -> torch.Tensor:
    """(n, 1, 8, 8) images of two kinds: bright left half or bright right half (3 of 4 are left)."""
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.1
    left = torch.arange(n) % 4 != 0
    x[left, :, :, :4] += 0.8
    x[~left, :, :, 4:] += 0.8
    return x


def test_self_conditioned_gan_clusters_the_training_images_and_conditions_both_networks_on_them():
    model = _tiny_gan(clusters=2)
    assert not model.conditional  # the outside sees an unconditional model: no labels anywhere
    x = _two_blobs()
    model.begin_fit(x, seed=0)
    # The two kinds of image are the two clusters, weighted by their share of the training set.
    cluster = model.condition(x, None)
    left = torch.arange(40) % 4 != 0
    assert cluster[left].unique().numel() == 1 and cluster[~left].unique().numel() == 1
    assert cluster[left][0] != cluster[~left][0]
    assert torch.allclose(model.cluster_weights.sort().values, torch.tensor([0.25, 0.75]))
    # The discriminator's judgement depends on the cluster it is told (its per-cluster bias), and the
    # generator's output on the cluster it is given.
    model.eval()
    img = x[:1].expand(2, -1, -1, -1) * 2 - 1
    logits = model.discriminate(img, torch.tensor([0, 1]))
    assert logits[0] != logits[1]
    z = torch.randn(1, 4).expand(2, -1)
    out = model.generate(z, torch.tensor([0, 1]), averaged=True)
    assert not torch.allclose(out[0], out[1])


def test_self_conditioned_gan_samples_draw_clusters_with_their_training_shares():
    model = _tiny_gan(clusters=2).eval()
    model.begin_fit(_two_blobs(), seed=0)
    big = int(model.cluster_weights.argmax())
    drawn = []
    original = model.generate

    def spy(z, y=None, **kw):
        drawn.append(y)
        return original(z, y, **kw)

    model.generate = spy
    model.sample(4000, generator=torch.Generator().manual_seed(0))
    share = float((drawn[0] == big).float().mean())
    assert abs(share - 0.75) < 0.03


def test_self_conditioning_is_refused_for_the_cgan_and_needs_as_many_images_as_clusters():
    with pytest.raises(ValueError, match="clusters: the cgan conditions on the labels"):
        make_config("cgan", {"clusters": 5})
    model = _tiny_gan(clusters=50)
    with pytest.raises(ConfigError, match="50 clusters need at least 50 training images"):
        model.begin_fit(_two_blobs(), seed=0)


def test_cgan_class_bias_makes_the_discriminator_depend_on_the_label():
    model = _tiny_gan("cgan").eval()
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)).expand(3, -1, -1, -1) * 2 - 1
    logits = model.discriminate(x, torch.tensor([0, 1, 2]))
    assert logits.shape == (3,)
    assert len({round(v, 6) for v in logits.tolist()}) == 3
    # The first conv sees the image's channels only: the label enters as an additive map after it.
    assert model.discriminator.body[0].in_channels == 1


def test_cgan_one_hot_input_planes_equal_the_per_class_bias():
    # A discriminator whose first conv reads [image, one-hot maps] (the old form) computes exactly what
    # the per-class bias form computes once its checkpoint is converted on loading.
    model = _tiny_gan("cgan").eval()
    g = torch.Generator().manual_seed(5)
    old = dict(model.state_dict())
    old_w = torch.randn(4, 1 + 3, 4, 4, generator=g) * 0.1
    old["discriminator.body.0.weight"] = old_w
    del old["discriminator.class_bias.weight"]
    model.load_state_dict(old)

    x = torch.rand(6, 1, 8, 8, generator=g) * 2 - 1
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    maps = F.one_hot(y, 3).float()[:, :, None, None].expand(-1, -1, 8, 8)
    stem = F.conv2d(torch.cat([x, maps], 1), old_w, old["discriminator.body.0.bias"], stride=2, padding=1)
    expected = model.discriminator.body[1:](stem).squeeze(-1)
    assert torch.allclose(model.discriminate(x, y), expected, atol=1e-5)


def test_rbm_bfloat16_products_give_the_float32_update_to_bfloat16_precision():
    """matmul_dtype=bfloat16 changes only the precision of the step's three products: from the same state
    and the same random draws, the weight update matches float32's to about bfloat16's 3 significant digits."""
    import contextlib

    updates = {}
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(0)
        rbm = get_model("rbm", make_config("rbm", {"image_shape": (1, 8, 8), "hidden_units": 32, "persistent": True,
                                                   "momentum": 0.0, "matmul_dtype": dtype}))
        with torch.no_grad():
            rbm.weight.normal_(0.0, 0.3)
        before = rbm.weight.detach().clone()
        x = (torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
        rbm.training_step(x, torch.zeros(50, dtype=torch.long), rbm.configure_optimizers(), contextlib.nullcontext())
        updates[dtype] = rbm.weight.detach() - before
    a, b = updates["float32"], updates["bfloat16"]
    assert a.abs().max() > 0
    assert not torch.equal(a, b)  # the bfloat16 products did run
    assert float((a - b).norm() / a.norm()) < 0.05


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("persistent", [False, True])
def test_rbm_step_buffers_reused_across_steps_carry_nothing_over(dtype, persistent):
    """The step writes its gradient and stacked operands into buffers kept from the step before: a second
    step must equal the same step taken by a fresh model in the same state, with the same random draws."""
    import contextlib
    import copy

    config = make_config("rbm", {"image_shape": (1, 8, 8), "hidden_units": 16, "persistent": persistent,
                                 "matmul_dtype": dtype})
    x = (torch.rand(2, 20, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    y = torch.zeros(20, dtype=torch.long)
    torch.manual_seed(0)
    used = get_model("rbm", config)
    opts = used.configure_optimizers()
    used.training_step(x[0], y, opts, contextlib.nullcontext())
    grad_storage = used.weight.grad.data_ptr()
    fresh = get_model("rbm", config)
    fresh.load_state_dict(used.state_dict())
    fresh_opts = fresh.configure_optimizers()
    # A deep copy: load_state_dict keeps same-device tensors as they are, so the momentum buffers would be shared.
    fresh_opts["model"].load_state_dict(copy.deepcopy(opts["model"].state_dict()))
    torch.manual_seed(7)
    used.training_step(x[1], y, opts, contextlib.nullcontext())
    torch.manual_seed(7)
    fresh.training_step(x[1], y, fresh_opts, contextlib.nullcontext())
    assert used.weight.grad.data_ptr() == grad_storage  # written in place, not reallocated
    assert torch.equal(used.weight.grad, fresh.weight.grad)
    for a, b in zip(used.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["gan", "cgan"])
def test_infogan_code_loss_enters_both_players_losses(name):
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    outs = {}
    for weight in (0.0, 1.0):
        model = _tiny_gan(name, latent_codes=5, info_weight=weight)
        torch.manual_seed(3)
        outs[weight] = model.loss(x, y)
    plain, info = outs[0.0], outs[1.0]
    assert info.info.item() > 0
    # Same weights and the same fakes: the code head's cross-entropy is added once to each loss.
    assert info.d_loss.item() == pytest.approx(plain.d_loss.item() + info.info.item(), rel=1e-5)
    assert info.g_loss.item() == pytest.approx(plain.g_loss.item() + info.info.item(), rel=1e-5)
    # ... and the code head is the discriminator's, trained by its optimizer.
    model = _tiny_gan(name, latent_codes=5)
    d_params = {id(p) for g in model.configure_optimizers()["discriminator"].param_groups for p in g["params"]}
    assert {id(p) for p in model.discriminator.code_head.parameters()} <= d_params


def test_infogan_code_is_cross_entropy_against_the_drawn_code(monkeypatch):
    model = _tiny_gan(latent_codes=4)
    code_logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]] * 3)
    monkeypatch.setattr(model.discriminator, "with_code", lambda x, y=None: (torch.zeros(3), code_logits))
    code = torch.tensor([0, 3, 1])
    _, info = model._judge(torch.zeros(3, 1, 8, 8), None, code)
    expected = -torch.log_softmax(code_logits, 1)[torch.arange(3), code].mean()
    assert info.item() == pytest.approx(expected.item(), rel=1e-6)


def test_infogan_samples_draw_every_code_value_and_generate_needs_one(monkeypatch):
    model = _tiny_gan(latent_codes=4).eval()
    with pytest.raises(ValueError, match="code"):
        model.generate(torch.randn(2, 4))
    seen = []
    real_generate = model.generate
    monkeypatch.setattr(model, "generate", lambda z, y=None, **kw: seen.append(kw["code"]) or real_generate(z, y, **kw))
    model.sample(4000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(seen[0], minlength=4)
    assert counts.numel() == 4 and torch.all((counts - 1000).abs() < 100), counts
