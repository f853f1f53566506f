"""The MLP VAE's training step with the negative ELBO's gradient written out, without autograd.

For the plain VAE (MLP encoder and decoder, N(0, I) prior, one posterior draw) the gradient of
recon + beta * KL is a chain of matrix products and elementwise factors that fits on a page. Writing it
out runs the same seventeen products as autograd at 784-200-200-50 but skips autograd's graph, its
per-op bookkeeping and its temporaries: on one CPU thread at batch 100 the step is 1.1-1.3x faster
(docs/benchmarks.md, "VAE step"). tests/test_vae_step.py checks the gradient against autograd's for
every configuration this step takes; every other configuration (conv encoder, mixture or VampPrior,
IWAE objective, autocast, frozen or non-float32 parameters) trains through autograd.

Shapes: x (B, C, H, W); encoder input u = [x_flat, onehot] (B, D + c); posterior mean and log-variance
(B, K); decoder input [z, onehot] (B, K + c); logits (B, D).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlib.models.base import VAEOutput

# The log-variance clamp of VAE.encode_dist: no gradient flows through a clamped value.
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


def elbo_step_applies(model: Any) -> bool:
    """True when ``model``'s configuration is one :func:`elbo_step` computes exactly."""
    cfg = model.config
    return cfg.encoder == "mlp" and cfg.prior == "normal" and cfg.iwae_k == 1


def usable_now(model: nn.Module) -> bool:
    """The per-step conditions: every parameter trainable and float32 (the step writes float32 gradients)."""
    return all(p.requires_grad and p.dtype == torch.float32 for p in model.parameters())


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
        # New gradient tensors, as autograd makes: mm(d^T, a, out=grad) took 14% longer (MKL, one thread).
        layer.weight.grad, layer.bias.grad = torch.mm(d.t(), a), d.sum(0)
        if i > 0:
            d = _activation_backward(torch.mm(d, layer.weight), a, activation)
        elif need_input:
            return torch.mm(d, layer.weight)
    return None


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
    enc, dec = _linears(model.encoder), _linears(model.decoder)

    u = x if onehot is None else torch.cat([x, onehot], 1)
    h, enc_inputs = _forward(enc, u, act)
    mu, raw_logvar = h[:, :k], h[:, k:]
    logvar = raw_logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
    std = torch.exp(logvar * 0.5)
    eps = torch.randn_like(mu)
    z = torch.addcmul(mu, eps, std)
    zin = z if onehot is None else torch.cat([z, onehot], 1)
    logits, dec_inputs = _forward(dec, zin, act)

    # The loss terms, and d loss / d logits (the recon term is a mean over the batch, hence the 1/n).
    if cfg.decoder == "bernoulli":
        # binary_cross_entropy_with_logits(l, x) = softplus(l) - x l, for any x in [0, 1].
        recon = (F.softplus(logits).sum() - torch.dot(x.reshape(-1), logits.reshape(-1))) / n
        d_logits = torch.sigmoid(logits).sub_(x).div_(n)
    else:
        s = cfg.decoder_sigma
        resid = logits - x
        const = x.shape[1] * (math.log(s) + 0.5 * math.log(2 * math.pi))
        recon = 0.5 * resid.pow(2).sum() / (s * s * n) + const
        d_logits = resid.div_(s * s * n)
    var = torch.exp(logvar)
    kl = 0.5 * (mu.pow(2) + var - 1.0 - logvar).sum() / n

    d_zin = _backward(dec, dec_inputs, d_logits, act, need_input=True)
    d_z = d_zin[:, :k]
    d_h = torch.empty_like(h)
    # d/d mu = d_z + beta mu / n; d/d logvar = 0.5 (d_z eps std + beta (exp(logvar) - 1) / n) inside the clamp.
    torch.add(d_z, mu, alpha=beta / n, out=d_h[:, :k])
    d_lv = d_h[:, k:]
    torch.mul(d_z, eps, out=d_lv).mul_(std).add_(var - 1.0, alpha=beta / n).mul_(0.5)
    d_lv.mul_((raw_logvar >= LOGVAR_MIN) & (raw_logvar <= LOGVAR_MAX))
    _backward(enc, enc_inputs, d_h, act, need_input=False)
    optimizer.step()
    return VAEOutput(loss=recon + beta * kl, recon=recon, kl=kl)
