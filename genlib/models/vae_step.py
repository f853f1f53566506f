"""The MLP VAE's training step with the negative ELBO's gradient written out, without autograd.

For the VAE with MLP encoder and decoder, the N(0, I) or mixture-of-Gaussians prior and one posterior
draw, the gradient of recon + beta * KL is a chain of matrix products and elementwise factors that fits
on a page. Writing it out runs the same matrix products as autograd (seventeen at 784-200-200-50) but
skips autograd's graph, its per-op bookkeeping and its temporaries (measured by ``python -m
bench.vae_step``, docs/benchmarks.md). tests/test_vae_step.py checks the gradient against autograd's for
every configuration this step takes; the others (conv encoder, VampPrior, IWAE objective, autocast,
frozen or non-float32 parameters) train through autograd.

Shapes: x (B, C, H, W); encoder input u = [x_flat, onehot] (B, D + c); posterior mean and log-variance
(B, K); decoder input [z, onehot] (B, K + c); logits (B, D); prior components (M, K).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from genlib.models.base import VAEOutput

# The log-variance clamp of the VAE's posterior and mixture prior (genlib/models/vae.py uses these): no
# gradient flows through a clamped value.
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


def elbo_step_applies(model: Any) -> bool:
    """True when ``model``'s configuration is one :func:`elbo_step` computes exactly."""
    cfg = model.config
    return cfg.encoder == "mlp" and cfg.prior in ("normal", "mog") and cfg.iwae_k == 1


def usable_now(model: nn.Module) -> bool:
    """The per-step conditions: every parameter trainable and float32 (the step writes float32 gradients)."""
    return all(p.requires_grad and p.dtype == torch.float32 for p in _parts(model)[2])


def _parts(model: Any) -> tuple[list[nn.Linear], list[nn.Linear], list[Tensor]]:
    """The encoder's and decoder's linear layers and every parameter, found once per model: walking the
    module tree every step is a visible share of a small batch's step."""
    parts = model.__dict__.get("_elbo_step_parts")
    if parts is None:
        parts = model.__dict__["_elbo_step_parts"] = (_linears(model.encoder), _linears(model.decoder),
                                                       list(model.parameters()))
    return parts


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def _activate_(h: Tensor, activation: str) -> Tensor:
    return torch.tanh_(h) if activation == "tanh" else torch.relu_(h)


def _activation_backward(grad: Tensor, out: Tensor, activation: str) -> Tensor:
    """d loss / d pre-activation from d loss / d output and the activation's output ``out``."""
    if activation == "tanh":
        return torch.ops.aten.tanh_backward(grad, out)  # grad * (1 - out^2)
    return torch.ops.aten.threshold_backward(grad, out, 0)  # grad where out > 0


def _forward(layers: list[nn.Linear], h: Tensor, activation: str) -> tuple[Tensor, list[Tensor]]:
    """Through the MLP; returns the output (pre-activation of the last layer) and each layer's input."""
    inputs = []
    for i, layer in enumerate(layers):
        inputs.append(h)
        h = torch.addmm(layer.bias, h, layer.weight.t())
        if i < len(layers) - 1:
            h = _activate_(h, activation)
    return h, inputs


def _backward(layers: list[nn.Linear], inputs: list[Tensor], d: Tensor, activation: str, need_input: bool) -> Tensor | None:
    """Writes every layer's weight and bias gradient from d = d loss / d output (B, out); returns
    d loss / d input (B, in) when ``need_input``."""
    for i in range(len(layers) - 1, -1, -1):
        layer, a = layers[i], inputs[i]
        # New gradient tensors, as autograd makes: mm(d^T, a, out=grad) into the old ones is slower with MKL.
        layer.weight.grad, layer.bias.grad = torch.mm(d.t(), a), d.sum(0)
        if i > 0:
            d = _activation_backward(torch.mm(d, layer.weight), a, activation)
        elif need_input:
            return torch.mm(d, layer.weight)
    return None


def _normal_kl(model: Any, mu: Tensor, logvar: Tensor, z: Tensor, n: int) -> tuple[Tensor, Tensor, None]:
    """Derivatives of the closed-form KL(q || N(0, I)), mean over the batch, in mu and logvar (B, K)."""
    return mu / n, torch.exp(logvar).sub_(1.0).mul_(0.5 / n), None


def _mixture_kl(model: Any, mu: Tensor, logvar: Tensor, z: Tensor, n: int) -> tuple[None, Tensor, Tensor]:
    """Derivatives of the mixture prior's KL estimate log q(z | x) - log p(z) at the draw z, mean over the batch.

    Returns d/d logvar of log q (-1/2 per latent: log q at z = mu + eps std is -(log 2 pi + logvar
    + eps^2) / 2, free of mu) and d/dz of -log p(z) (B, K), both without beta (the caller scales them), and
    writes the gradients of the prior's means and log-variances (M, K), beta included (their only term). With r (B, M) the components' responsibilities for each z and u = (z - m) / var:
    d(-log p)/dz = sum_c r_c u_c, d/dm_c = -sum_b r_c u_c, d/ds_c = sum_b r_c (1 - (z - m_c) u_c) / 2.
    """
    means, raw_logvars = model.prior_means, model.prior_logvars
    s = raw_logvars.clamp(LOGVAR_MIN, LOGVAR_MAX)
    diff = z.unsqueeze(1) - means  # (B, M, K)
    u = diff * torch.exp(-s)
    per_component = -0.5 * (math.log(2 * math.pi) + s + diff * u).sum(-1)  # (B, M)
    r = torch.softmax(per_component, 1).unsqueeze(-1).div_(n)  # (B, M, 1), the batch mean's 1/n folded in
    ru = r * u
    beta = model.config.beta
    means.grad = ru.sum(0).mul_(-beta)
    d_s = (r * (1.0 - diff * u)).sum(0).mul_(0.5 * beta)
    raw_logvars.grad = d_s.mul_((raw_logvars >= LOGVAR_MIN) & (raw_logvars <= LOGVAR_MAX))
    return None, torch.full_like(logvar, -0.5 / n), ru.sum(1)


@torch.no_grad()
def elbo_step(model: Any, x: Tensor, y: Tensor | None, optimizer: torch.optim.Optimizer) -> VAEOutput:
    """One optimisation step of the negative ELBO per image, mean over the batch x (B, C, H, W).

    Draws the same noise in the same order as ``model.loss`` (binarisation, then the posterior draw),
    so the two paths train alike to float rounding. Returns the detached loss terms.
    """
    cfg = model.config
    act, beta, k = cfg.activation, cfg.beta, cfg.latent_dim
    x = model.prepare_input(x.float()).flatten(1)
    n = x.shape[0]
    onehot = model._one_hot(y, n)
    enc, dec, _ = _parts(model)

    u = x if onehot is None else torch.cat([x, onehot], 1)
    h, enc_inputs = _forward(enc, u, act)
    mu, raw_logvar = h[:, :k], h[:, k:]
    logvar = raw_logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
    std = torch.exp(logvar * 0.5)
    eps = torch.randn_like(mu)
    z = torch.addcmul(mu, eps, std)
    zin = z if onehot is None else torch.cat([z, onehot], 1)
    logits, dec_inputs = _forward(dec, zin, act)

    # The loss terms by the model's own definitions; only their gradients are written out here.
    recon = -model.log_px_given_z(logits.view(n, *cfg.image_shape), x.view(n, *cfg.image_shape)).mean()
    kl = model.kl_term(mu, logvar, z).mean()
    # d loss / d logits (the recon term is a mean over the batch, hence the 1/n).
    if cfg.decoder == "bernoulli":
        d_logits = torch.sigmoid(logits).sub_(x).div_(n)
    else:
        d_logits = (logits - x).div_(cfg.decoder_sigma**2 * n)
    d_mu_kl, d_lv_kl, d_z_kl = (_normal_kl if cfg.prior == "normal" else _mixture_kl)(model, mu, logvar, z, n)

    d_zin = _backward(dec, dec_inputs, d_logits, act, need_input=True)
    d_z = d_zin[:, :k]
    if d_z_kl is not None:
        d_z = d_z + d_z_kl * beta
    d_h = torch.empty_like(h)
    # z = mu + eps exp(logvar / 2): d/d mu = d_z + the KL's own; d/d logvar = d_z eps std / 2 + the KL's own,
    # inside the clamp only.
    torch.add(d_z, d_mu_kl, alpha=beta, out=d_h[:, :k]) if d_mu_kl is not None else d_h[:, :k].copy_(d_z)
    d_lv = d_h[:, k:]
    torch.mul(d_z, eps, out=d_lv).mul_(std).mul_(0.5).add_(d_lv_kl, alpha=beta)
    d_lv.mul_((raw_logvar >= LOGVAR_MIN) & (raw_logvar <= LOGVAR_MAX))
    _backward(enc, enc_inputs, d_h, act, need_input=False)
    optimizer.step()
    return VAEOutput(loss=recon + beta * kl, recon=recon, kl=kl)
