"""Variational autoencoders: ``vae`` and the class-conditional ``cvae`` (Kingma & Welling 2014)."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from genlib.models.base import GenerativeModel, ModelConfig, VAEOutput, bernoulli, rand, randn
from genlib.models.layers import ConvDecoder, ConvEncoder, mlp
from genlib.models.registry import register_model
from genlib.models.vae_step import LOGVAR_MAX, LOGVAR_MIN, elbo_step, elbo_step_applies, usable_now


class VAEConfig(ModelConfig):
    """VAE with an MLP or conv encoder and a Bernoulli or Gaussian decoder.

    The IWAE paper's one-stochastic-layer model is hidden_dims=(200, 200), latent_dim=50,
    activation="tanh", binarize=True.
    """

    model_name: Literal["vae"] = "vae"
    encoder: Literal["mlp", "conv"] = "mlp"
    hidden_dims: tuple[int, ...] = (400, 200)
    channels: tuple[int, ...] = (32, 64)
    latent_dim: int = Field(16, gt=0)
    activation: Literal["relu", "tanh"] = "relu"
    decoder: Literal["bernoulli", "gaussian"] = "bernoulli"
    decoder_sigma: float = Field(0.1, gt=0)
    beta: float = Field(1.0, ge=0)
    binarize: bool = False  # dynamic binarisation of the inputs at every step (Bernoulli decoder only)
    # Importance samples of the training objective (Burda et al. 2016): 1 is the ELBO,
    # k > 1 the IWAE bound log (1/k) sum_i p(x, z_i) / q(z_i | x), tighter as k grows.
    iwae_k: int = Field(1, ge=1)
    # The prior p(z). "normal" is N(0, I), with the KL in closed form. "mog" is a mixture of
    # prior_components learned diagonal Gaussians; "vamp" the VampPrior (Tomczak & Welling 2018), the
    # encoder's posteriors at prior_components learned pseudo-inputs, equally weighted. Both can follow
    # the aggregate posterior, so fewer prior draws land where no training image's code lies ("prior
    # holes"); their KL term is the Monte-Carlo estimate log q(z|x) - log p(z) at the reparameterised
    # draw, so the ELBO stays unbiased.
    prior: Literal["normal", "mog", "vamp"] = "normal"
    prior_components: int = Field(10, gt=0)


class CVAEConfig(VAEConfig):
    model_name: Literal["cvae"] = "cvae"  # type: ignore[assignment]

    @model_validator(mode="after")
    def _prior_without_labels(self) -> CVAEConfig:
        # Pseudo-inputs have no label, so q(z | u_k, y) would need one encoder pass per class and pseudo-input.
        if self.prior == "vamp":
            raise ValueError("prior: the VampPrior is for the unconditional vae; use 'normal' or 'mog'")
        return self


_ACT = {"relu": nn.ReLU, "tanh": nn.Tanh}


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latents. mu, logvar: (B, K). Returns (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dimension."""
    return (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp())).sum(-1)


@register_model("vae")
class VAE(GenerativeModel):
    """x (B, C, H, W) -> q(z|x) = N(mu, diag sigma^2), z (B, K) -> p(x|z). Loss is the negative ELBO per image."""

    config_class = VAEConfig
    # What it can do (reconstructs, generates, likelihood, ...) is declared in genlib/models/catalog.py.

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        k = config.latent_dim
        cond = config.num_classes if self.conditional else 0
        act = _ACT[config.activation]
        if config.encoder == "conv":
            self.encoder = ConvEncoder(config.image_shape, config.channels, 2 * k, extra_in=cond)
            self.decoder = ConvDecoder(config.image_shape, config.channels, k + cond)
        else:
            self.encoder = nn.Sequential(mlp([config.input_dim + cond, *config.hidden_dims, 2 * k], act))
            self.decoder = mlp([k + cond, *reversed(config.hidden_dims), config.input_dim], act)
        self._elbo_step_applies = elbo_step_applies(self)
        m = config.prior_components
        if config.prior == "mog":
            # Means spread like draws of N(0, I), so the components start apart and the KL starts finite.
            self.prior_means = nn.Parameter(torch.randn(m, k))
            self.prior_logvars = nn.Parameter(torch.zeros(m, k))
        elif config.prior == "vamp":
            # Pseudo-inputs as logits of images in (0, 1): grey noise around 0.5 at the start.
            self.pseudo_inputs = nn.Parameter(torch.randn(m, *config.image_shape))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    # --- conditioning helpers: no-ops for the unconditional model ----------------------------
    def _one_hot(self, y: Tensor | None, n: int) -> Tensor | None:
        if not self.conditional:
            return None
        if y is None:
            raise ValueError(f"{self.name} needs labels")
        return F.one_hot(y.long(), self.config.num_classes).to(self.encoder_dtype)

    @property
    def encoder_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def encode_dist(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q(z|x[,y]): returns (mu, logvar), each (B, latent_dim)."""
        onehot = self._one_hot(y, x.shape[0])
        if self.config.encoder == "conv":
            inp = x
            if onehot is not None:
                maps = onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])
                inp = torch.cat([x, maps.to(x.dtype)], 1)
            h = self.encoder(inp)
        else:
            inp = x.flatten(1)
            if onehot is not None:
                inp = torch.cat([inp, onehot.to(inp.dtype)], 1)
            h = self.encoder(inp)
        mu, logvar = h.float().chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Posterior mean, (B, latent_dim): the code used by evaluation and probes."""
        return self.encode_dist(x, y)[0]

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        onehot = self._one_hot(y, z.shape[0])
        if onehot is not None:
            z = torch.cat([z, onehot.to(z.dtype)], -1)
        return self.decoder(z).view(-1, *self.config.image_shape).float()

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """(B, K) -> decoder mean in [0, 1], (B, C, H, W)."""
        logits = self.decode_logits(z, y)
        return torch.sigmoid(logits) if self.config.decoder == "bernoulli" else logits.clamp(0, 1)

    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decode(self.encode(x, y), y)

    # --- the prior p(z) -----------------------------------------------------------------------
    def prior_mixture(self) -> tuple[Tensor, Tensor]:
        """Means and log-variances of the prior's equally weighted components, each (M, latent_dim)."""
        if self.config.prior == "mog":
            return self.prior_means.float(), self.prior_logvars.float().clamp(LOGVAR_MIN, LOGVAR_MAX)
        if self.config.prior == "vamp":
            return self.encode_dist(torch.sigmoid(self.pseudo_inputs))
        zeros = torch.zeros(1, self.config.latent_dim, device=self.device)
        return zeros, zeros

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z) for z (..., latent_dim). Returns (...)."""
        if self.config.prior == "normal":
            return log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
        mu, logvar = self.prior_mixture()
        per_component = log_normal(z.unsqueeze(-2), mu, logvar)  # (..., M)
        return torch.logsumexp(per_component, -1) - math.log(mu.shape[0])

    @property
    def kl_closed_form(self) -> bool:
        """True when KL(q(z|x) || p(z)) is computed exactly; else it is estimated at posterior draws."""
        return self.config.prior == "normal"

    def kl_term(self, mu: Tensor, logvar: Tensor, z: Tensor) -> Tensor:
        """KL(q(z|x) || p(z)) per image: closed form for the normal prior, else log q(z|x) - log p(z) at z.

        Args: mu, logvar (B, K) of q(z|x); z (B, K) a draw from it. Returns (B,).
        """
        if self.kl_closed_form:
            return gaussian_kl(mu, logvar)
        return log_normal(z, mu, logvar) - self.log_prior(z)

    def log_px_given_z(self, logits: Tensor, x: Tensor) -> Tensor:
        """log p(x|z) summed over pixels. logits (..., C, H, W) broadcast against x. Returns (...)."""
        if self.config.decoder == "bernoulli":
            ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        else:
            s = self.config.decoder_sigma
            ll = -0.5 * ((x - logits) / s).pow(2) - math.log(s) - 0.5 * math.log(2 * math.pi)
        return ll.flatten(-3).sum(-1)

    def prepare_input(self, x: Tensor) -> Tensor:
        """Dynamic binarisation when configured (fresh Bernoulli draw each call)."""
        if self.config.binarize and self.training:
            return bernoulli(x)
        return x

    def loss(self, x: Tensor, y: Tensor | None = None) -> VAEOutput:
        """Negative ELBO per image (``iwae_k`` = 1) or negative IWAE bound (``iwae_k`` > 1).

        For the IWAE bound ``recon`` and ``kl`` are Monte-Carlo means over the k draws of
        -log p(x|z) and log q(z|x) - log p(z) (their sum is the k-sample negative ELBO, not the loss).
        """
        x = self.prepare_input(x.float())
        if self.config.iwae_k > 1:
            return self.iwae_loss(x, y, self.config.iwae_k)
        mu, logvar = self.encode_dist(x, y)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = -self.log_px_given_z(self.decode_logits(z, y), x).mean()
        kl = self.kl_term(mu, logvar, z).mean()
        return VAEOutput(loss=recon + self.config.beta * kl, recon=recon, kl=kl)

    def training_step(
        self, x: Tensor, y: Tensor, optimizers: dict[str, torch.optim.Optimizer], autocast: AbstractContextManager
    ) -> VAEOutput:
        """One Adam step on the negative ELBO: its gradient written out (genlib/models/vae_step.py) for the
        MLP model with the normal or mixture prior outside autocast, autograd through :meth:`loss` otherwise."""
        with autocast:
            autocast_on = torch.is_autocast_enabled(x.device.type)
        if self._elbo_step_applies and not autocast_on and usable_now(self):
            return elbo_step(self, x, y if self.conditional else None, optimizers["model"])
        return super().training_step(x, y, optimizers, autocast)

    def iwae_loss(self, x: Tensor, y: Tensor | None, k: int) -> VAEOutput:
        """Negative IWAE bound -log (1/k) sum_i w_i, mean over the batch x (B, C, H, W), with gradients."""
        log_px, log_pz, log_q = self._log_weight_terms(x, y, k)  # each (k, B)
        bound = torch.logsumexp(log_px + log_pz - log_q, 0) - math.log(k)
        recon = -log_px.mean()
        kl = (log_q - log_pz).mean()
        return VAEOutput(loss=-bound.mean(), recon=recon, kl=kl)

    def _log_weight_terms(self, x: Tensor, y: Tensor | None, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """log p(x|z_i), log p(z_i), log q(z_i|x) for k reparameterised draws; each (k, B)."""
        mu, logvar = self.encode_dist(x, y)
        std = (0.5 * logvar).exp()
        eps = torch.randn(k, *mu.shape, device=mu.device)
        z = mu + eps * std  # (k, B, K)
        log_q = log_normal(z, mu, logvar)
        log_pz = self.log_prior(z)
        yy = None if y is None else y.repeat(k)
        logits = self.decode_logits(z.reshape(k * x.shape[0], -1), yy).view(k, *x.shape)
        return self.log_px_given_z(logits, x), log_pz, log_q

    @torch.no_grad()
    def log_importance_weights(self, x: Tensor, y: Tensor | None = None, k: int = 1) -> Tensor:
        """log p(x, z_i) - log q(z_i | x) for k posterior draws. x: (B, C, H, W). Returns (k, B).

        logsumexp over k minus log k is the importance-weighted bound (Burda et al. 2016).
        """
        log_px, log_pz, log_q = self._log_weight_terms(x, y, k)
        return log_px + log_pz - log_q

    @torch.no_grad()
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        labels = self._check_labels(labels, n)
        z = randn((n, self.config.latent_dim), generator, self.device)
        if self.config.prior != "normal":
            # Pick a component uniformly, then draw from it: z = mu_c + sigma_c * eps.
            mu, logvar = self.prior_mixture()
            c = (rand((n,), generator, self.device) * mu.shape[0]).long().clamp_max(mu.shape[0] - 1)
            z = mu[c] + z * (0.5 * logvar[c]).exp()
        return self.decode(z, labels)


@register_model("cvae")
class CVAE(VAE):
    """Class-conditional VAE: one-hot labels join the encoder's input and the decoder's code."""

    config_class = CVAEConfig
