"""Test-set likelihoods: VAE ELBO and importance-weighted NLL (Burda et al. 2016); RBM pseudo-likelihood
and AIS log-likelihood with its reverse-annealing (RAISE) counterpart. All in nats per image."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor

from genlib.evaluation._utils import cpu_generator, seeded
from genlib.evaluation.ais import (
    AISResult,
    ais_log_partition,
    base_rate_visible_bias,
    raise_log_likelihood,
    rbm_log_likelihood,
)

logger = logging.getLogger(__name__)


@torch.no_grad()
def vae_elbo(model: Any, x: Tensor, y: Tensor | None = None, *, samples: int = 10) -> Tensor:
    """ELBO per image: E_q[log p(x|z)] - KL(q(z|x) || p(z)), both means over ``samples`` draws.

    The model's ``kl_term`` is the KL in closed form for a N(0, I) prior (the same at every draw) and
    log q(z|x) - log p(z) under its own prior otherwise, so the bound is the one the model was trained on.
    Args: x (B, C, H, W) on the model's device; y (B,) labels for conditional models. Returns (B,).
    Draws from the global RNG: wrap in a seeded context for reproducibility.
    """
    mu, logvar = model.encode_dist(x, y)
    std = (0.5 * logvar).exp()
    elbo = torch.zeros(x.shape[0], device=x.device, dtype=torch.float64)
    for _ in range(samples):
        z = mu + torch.randn_like(mu) * std
        elbo += model.log_px_given_z(model.decode_logits(z, y), x).double()
        elbo -= model.kl_term(mu, logvar, z).double()
    return elbo / samples


@torch.no_grad()
def iwae_log_likelihood(model: Any, x: Tensor, y: Tensor | None = None, *, k: int, chunk: int = 100) -> Tensor:
    """Importance-weighted estimate log (1/k) sum_i p(x, z_i) / q(z_i | x) per image (a lower bound on log p(x)).

    Draws are taken ``chunk`` at a time through ``model.log_importance_weights`` to bound memory.
    Args: x (B, C, H, W); y (B,) or None. Returns (B,) float64.
    """
    parts = []
    done = 0
    while done < k:
        m = min(chunk, k - done)
        parts.append(model.log_importance_weights(x, y, m).double())
        done += m
    log_w = torch.cat(parts, 0)  # (k, B)
    return torch.logsumexp(log_w, 0) - math.log(k)


def likelihood_inputs(model: Any, x: Tensor, seed: int) -> tuple[Tensor, str]:
    """Test images as the model's likelihood sees them: binarised once (fixed seed) when it was
    trained on dynamically binarised data, else the grey levels. Returns (x, description)."""
    if model.binarized_inputs:
        return torch.bernoulli(x.cpu(), generator=cpu_generator(seed)), f"binarised once (seed {seed})"
    return x.cpu(), "grey levels"


def vae_likelihood_rows(
    model: Any, x: Tensor, y: Tensor, *, k: int, chunk: int, elbo_samples: int, seed: int, batch_size: int,
    device: torch.device,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """ELBO and IWAE NLL of a VAE on x (N, C, H, W) with labels y (N,) (used only by conditional models).

    Returns (rows of the "likelihood" table, metrics elbo / iwae_nll / iwae_k).
    """
    x, inputs = likelihood_inputs(model, x, seed)
    labels = y if model.conditional else None
    elbo_parts, iwae_parts = [], []
    # chunk draws of every image in a batch are decoded at once: keep chunk x batch near 20k images.
    bs = max(1, min(batch_size, 20000 // chunk))
    with seeded(seed, device):
        for start in range(0, x.shape[0], bs):
            xb = x[start : start + bs].to(device)
            yb = None if labels is None else labels[start : start + bs].to(device)
            elbo_parts.append(vae_elbo(model, xb, yb, samples=elbo_samples).cpu())
            iwae_parts.append(iwae_log_likelihood(model, xb, yb, k=k, chunk=chunk).cpu())
    elbo = float(torch.cat(elbo_parts).mean())
    iwae_nll = -float(torch.cat(iwae_parts).mean())
    cond = " given the label" if model.conditional else ""
    kl = "closed-form" if model.kl_closed_form else "Monte-Carlo"
    rows = [
        {"model": model.name, "quantity": "elbo", "value": elbo, "unit": "nats/image",
         "details": f"{elbo_samples} posterior draws + {kl} KL{cond}; {inputs}; {x.shape[0]} test images"},
        {"model": model.name, "quantity": "iwae_nll", "value": iwae_nll, "unit": "nats/image",
         "details": f"-log p(x{'|y' if model.conditional else ''}) bound, k={k}; {inputs}; {x.shape[0]} test images"},
    ]
    return rows, {"elbo": elbo, "iwae_nll": iwae_nll, "iwae_k": float(k)}


def rbm_likelihood_rows(
    model: Any, x_train: Tensor, x: Tensor, *, n_chains: int, n_betas: int, pll_exact: bool, seed: int,
    batch_size: int, device: torch.device, raise_betas: int | None = None, raise_images: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float], AISResult]:
    """Pseudo-log-likelihood and AIS log-likelihood of an RBM on test images x (N, C, H, W); with
    ``raise_betas`` also the conservative reverse-annealing (RAISE) log-likelihood on the first
    ``raise_images`` of them (all when None), on a schedule of ``raise_betas`` temperatures.

    An RBM trained on stochastic binarisations (``binarize``, the default) is scored on the test
    images binarised once with a fixed seed, as Salakhutdinov & Murray (2008) and the VAE rows do;
    thresholding at 0.5 instead would give a cleaner, easier test set and a higher number. An RBM
    trained on the grey levels sees them thresholded at 0.5. The base-rate model's visible biases
    are fit to the train images' pixel means in the same form.
    Returns (rows of the "likelihood" table, metrics, the AIS result).
    """
    if model.binarized_inputs:
        x, inputs = likelihood_inputs(model, x, seed)
        base = base_rate_visible_bias(x_train.flatten(1).double().cpu())  # E[bernoulli(x)] = x
    else:
        inputs = "thresholded at 0.5"
        base = base_rate_visible_bias((x_train.flatten(1) > 0.5).double().cpu())
    gen = torch.Generator(device=device).manual_seed(int(seed))
    pll = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device)
            pll.append(model.pseudo_log_likelihood(xb, gen, exact=pll_exact).double().cpu())
    pll_mean = float(torch.cat(pll).mean())
    ais = ais_log_partition(
        model.weight, model.visible_bias, model.hidden_bias, n_chains=n_chains, n_betas=n_betas,
        base_visible_bias=base, seed=seed,
    )
    ll = float(rbm_log_likelihood(model, x, ais.log_z, batch_size=batch_size).mean())
    n = x.shape[0]
    how = "exact (all bits)" if pll_exact else "one random bit per image x V (fixed seed)"
    rows = [
        {"model": model.name, "quantity": "test_pseudo_log_likelihood", "value": pll_mean, "unit": "nats/image",
         "details": f"{how}; test {inputs}; {n} test images"},
        {"model": model.name, "quantity": "ais_log_z", "value": ais.log_z, "unit": "nats",
         "details": f"{n_chains} chains x {n_betas} betas; +-3 s.e. [{ais.log_z_low:.2f}, {ais.log_z_high:.2f}]"},
        {"model": model.name, "quantity": "ais_log_likelihood", "value": ll, "unit": "nats/image",
         "details": f"-F(v) - AIS log Z; test {inputs}; {n} test images"},
    ]
    metrics = {"test_pseudo_log_likelihood": pll_mean, "ais_log_z": ais.log_z, "ais_log_likelihood": ll}
    if raise_betas is not None:
        x_r = x if raise_images is None else x[:raise_images]
        v = (x_r.flatten(1) > 0.5).float()
        est = raise_log_likelihood(model.weight, model.visible_bias, model.hidden_bias, v, n_betas=raise_betas,
                                   base_visible_bias=base, seed=seed, batch_size=batch_size)
        rll = float(est.mean())
        # AIS on the same images, so the two bracket the same quantity.
        ais_same = float(rbm_log_likelihood(model, x_r, ais.log_z, batch_size=batch_size).mean())
        rows.append({"model": model.name, "quantity": "raise_log_likelihood", "value": rll, "unit": "nats/image",
                     "details": f"reverse annealing, {raise_betas} betas, one chain per image; test {inputs}; "
                                f"{x_r.shape[0]} test images (AIS on them: {ais_same:.2f})"})
        metrics.update({"raise_log_likelihood": rll, "raise_images": float(x_r.shape[0]),
                        "ais_log_likelihood_raise_images": ais_same})
    return rows, metrics, ais
