"""DCGAN (Radford et al. 2016), optionally self-conditioned on clusters, and its class-conditional variant,
sized for 28x28-style images. The networks are in genlib/models/gan_nets.py."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from genlib.errors import ConfigError
from genlib.models.base import (
    GANOutput,
    GenerativeModel,
    InfoGANOutput,
    ModelConfig,
    adam,
    detach_output,
    rand,
    randn,
)
from genlib.models.gan_nets import Discriminator, Generator, dcgan_init, one_hot_maps_as_class_bias
from genlib.models.layers import frozen_copy
from genlib.models.registry import register_model


class GANConfig(ModelConfig):
    """DCGAN hyper-parameters; Adam(2e-4, beta1=0.5) as in the paper.

    ``discriminator_lr`` (None: ``lr``) allows the two time-scale update rule (Heusel et al. 2017).
    ``ema_decay`` > 0 keeps an exponential moving average of the generator's weights and samples from it
    (Yazici et al. 2019; ProGAN, StyleGAN and BigGAN do the same); 0 samples from the live generator.
    """

    model_name: Literal["gan"] = "gan"
    latent_dim: int = Field(100, gt=0)
    generator_features: int = Field(64, gt=0)
    discriminator_features: int = Field(64, gt=0)
    lr: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    discriminator_lr: float | None = Field(None, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)  # real target = 1 - label_smoothing
    ema_decay: float = Field(0.999, ge=0, lt=1)
    # InfoGAN (Chen et al. 2016): a uniform categorical code of ``latent_codes`` values joins z and an
    # auxiliary head Q(c|x) on the discriminator's features learns to recover it, the generator helping
    # (weight ``info_weight``). A continuous z must bridge separate modes (MNIST's digits) with in-between
    # images; a discrete code can give each mode its own value. 0: no code.
    latent_codes: int = Field(0, ge=0)
    info_weight: float = Field(1.0, ge=0)
    # Self-conditioning (after Liu et al. 2020, "Diverse Image Generation via Self-Conditioned GANs"): both
    # networks are conditioned, as the cGAN is on labels, on which of ``clusters`` k-means clusters of the
    # training images a real image lies in, and sampling draws a cluster with its share of the training
    # images. No label is used; the model stays unconditional. Liu et al. cluster the discriminator's
    # features and re-cluster as it trains; here the clusters are of the pixels, found once when training
    # starts (scikit-learn's KMeans). Each cluster is a narrower target than the whole data set, so fewer
    # samples fall between digits. 0: a plain DCGAN.
    clusters: int = Field(0, ge=0)


class CGANConfig(GANConfig):
    model_name: Literal["cgan"] = "cgan"  # type: ignore[assignment]

    @model_validator(mode="after")
    def _labels_not_clusters(self) -> CGANConfig:
        if self.clusters:
            raise ValueError("clusters: the cgan conditions on the labels; self-conditioning on clusters is the gan's")
        return self


@register_model("gan")
class GAN(GenerativeModel):
    """DCGAN with the non-saturating loss; the discriminator is updated first, then the generator."""

    config_class = GANConfig
    # What it can do (reconstructs, generates, likelihood, ...) is declared in genlib/models/catalog.py.

    def __init__(self, config: GANConfig) -> None:
        super().__init__(config)
        # The one-hot condition both networks see: the label (cgan), the image's cluster (self-conditioned gan).
        self.cond_size = config.num_classes if self.conditional else config.clusters
        self.generator = Generator(config, self.cond_size + config.latent_codes)
        self.discriminator = Discriminator(config, self.cond_size)
        if config.clusters:  # found by begin_fit; saved with the weights, so a checkpoint samples alike
            self.register_buffer("cluster_centres", torch.zeros(config.clusters, config.input_dim))
            self.register_buffer("cluster_weights", torch.full((config.clusters,), 1.0 / config.clusters))
        self.apply(dcgan_init)
        if self.discriminator.class_bias is not None:
            nn.init.normal_(self.discriminator.class_bias.weight, 0.0, 0.02)
        # The averaged generator used for sampling, and how many averaging steps it has taken (its warm-up).
        self.generator_ema = frozen_copy(self.generator) if config.ema_decay > 0 else None
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Checkpoints from before the moving average start it at the live generator's weights; those from
        # before the per-class bias have their one-hot input planes turned into the equivalent bias maps.
        if self.generator_ema is not None:
            for name in self.generator_ema.state_dict():
                live = state_dict.get(f"{prefix}generator.{name}")
                if live is not None:
                    state_dict.setdefault(f"{prefix}generator_ema.{name}", live.clone())
        state_dict.setdefault(f"{prefix}ema_updates", torch.zeros((), dtype=torch.long))
        key = f"{prefix}discriminator.body.0.weight"
        c = self.config.image_shape[0]
        if self.conditional and key in state_dict and state_dict[key].shape[1] == c + self.config.num_classes:
            weight, bias = one_hot_maps_as_class_bias(state_dict[key], c, self.config.image_shape[1:])
            state_dict[key] = weight
            state_dict.setdefault(f"{prefix}discriminator.class_bias.weight", bias)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @torch.no_grad()
    def begin_fit(self, x_train: Tensor, seed: int) -> None:
        """Before training from scratch: cluster the training images x_train (N, C, H, W) in [0, 1]
        (self-conditioning only; fit() calls this once, not when resuming)."""
        k = self.config.clusters
        if not k:
            return
        from sklearn.cluster import KMeans  # only here: importing genlib.models stays light

        if x_train.shape[0] < k:
            raise ConfigError(f"clusters: {k} clusters need at least {k} training images, got {x_train.shape[0]}")
        km = KMeans(k, n_init=1, random_state=seed).fit(x_train.flatten(1).float().cpu().numpy())
        self.cluster_centres.copy_(torch.as_tensor(km.cluster_centers_, dtype=torch.float32))
        counts = torch.bincount(torch.as_tensor(km.labels_, dtype=torch.long), minlength=k).float()
        self.cluster_weights.copy_(counts / counts.sum())

    def condition(self, x: Tensor, y: Tensor | None) -> Tensor | None:
        """What real images x (B, C, H, W) in [0, 1] are conditioned on: (B,) labels for the cgan, the
        nearest cluster centre for a self-conditioned gan, None for a plain gan."""
        if self.conditional:
            return y
        if self.config.clusters:
            return torch.cdist(x.flatten(1).float(), self.cluster_centres).argmin(1)
        return None

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.config.beta1, 0.999)
        d_lr = self.config.discriminator_lr or self.config.lr
        return {
            "discriminator": adam(self.discriminator.parameters(), lr=d_lr, betas=betas),
            "generator": adam(self.generator.parameters(), lr=self.config.lr, betas=betas),
        }

    def generate(self, z: Tensor, y: Tensor | None = None, *, code: Tensor | None = None,
                 averaged: bool = False) -> Tensor:
        """z (B, latent_dim) [, y (B,) labels or clusters] [, code (B,) in [0, latent_codes)] -> images in
        [-1, 1], (B, C, H, W).

        ``averaged`` uses the moving-average generator (the live one when ``ema_decay`` is 0); training
        losses always use the live generator, whose gradients the optimizer follows.
        """
        if self.cond_size:
            z = torch.cat([z, F.one_hot(y, self.cond_size).to(z.dtype)], 1)
        if self.config.latent_codes:
            if code is None:
                raise ValueError(f"{self.name} with latent_codes needs a code for each z")
            z = torch.cat([z, F.one_hot(code, self.config.latent_codes).to(z.dtype)], 1)
        net = self.generator_ema if averaged and self.generator_ema is not None else self.generator
        return net(z)

    def discriminate(self, x_pm1: Tensor, y: Tensor | None = None) -> Tensor:
        """Images in [-1, 1] (B, C, H, W) [, y (B,) labels or clusters] -> logits (B,)."""
        return self.discriminator(x_pm1, y if self.cond_size else None)

    @torch.no_grad()
    def update_ema(self) -> None:
        """Move the averaged generator toward the live one after a generator step.

        The decay is min(ema_decay, (1 + t) / (10 + t)) at update t (TensorFlow's ExponentialMovingAverage
        warm-up), so the random initial weights are forgotten within a short run; BatchNorm statistics
        are copied, since they belong to whichever weights produced them.
        """
        if self.generator_ema is None:
            return
        t = self.ema_updates.to(torch.float32)
        decay = torch.clamp((1 + t) / (10 + t), max=self.config.ema_decay)
        live = dict(self.generator.named_parameters())
        live_buffers = dict(self.generator.named_buffers())
        for name, avg in self.generator_ema.named_buffers():
            if name in live:
                avg.lerp_(live[name].detach(), (1 - decay).to(avg.dtype))
            else:
                avg.copy_(live_buffers[name])
        self.ema_updates += 1

    def _judge(self, fake: Tensor, y: Tensor | None, code: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Logits of fakes (B,) and, with a latent code, the code head's cross-entropy against it."""
        if code is None:
            return self.discriminate(fake, y).float(), None
        logits, code_logits = self.discriminator.with_code(fake, y if self.cond_size else None)
        return logits.float(), F.cross_entropy(code_logits.float(), code)

    def _losses(
        self, x: Tensor, y: Tensor | None, fake: Tensor, code: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        real_logits = self.discriminate(x * 2 - 1, y).float()
        fake_logits, info = self._judge(fake.detach(), y, code)
        real_target = torch.full_like(real_logits, 1.0 - self.config.label_smoothing)
        d_loss = F.binary_cross_entropy_with_logits(real_logits, real_target) + F.binary_cross_entropy_with_logits(
            fake_logits, torch.zeros_like(fake_logits)
        )
        if info is not None:  # the code head learns on the discriminator's step
            d_loss = d_loss + self.config.info_weight * info
        return d_loss, real_logits, fake_logits, real_target

    def _generator_loss(self, fake: Tensor, y: Tensor | None, code: Tensor | None) -> tuple[Tensor, Tensor | None]:
        # Non-saturating generator loss: maximise log D(G(z)) rather than minimise log(1 - D(G(z))).
        g_logits, info = self._judge(fake, y, code)
        g_loss = F.binary_cross_entropy_with_logits(g_logits, torch.ones_like(g_logits))
        return (g_loss if info is None else g_loss + self.config.info_weight * info), info

    def _fake(self, n: int, y: Tensor | None, device: torch.device) -> tuple[Tensor, Tensor | None]:
        z = torch.randn(n, self.config.latent_dim, device=device)
        code = torch.randint(0, self.config.latent_codes, (n,), device=device) if self.config.latent_codes else None
        return self.generate(z, y, code=code), code

    def _output(self, d_loss: Tensor, g_loss: Tensor, real_logits: Tensor, fake_logits: Tensor,
                info: Tensor | None) -> GANOutput:
        terms = dict(loss=d_loss + g_loss, d_loss=d_loss, g_loss=g_loss, d_real=torch.sigmoid(real_logits).mean(),
                     d_fake=torch.sigmoid(fake_logits).mean())
        return GANOutput(**terms) if info is None else InfoGANOutput(**terms, info=info)

    def loss(self, x: Tensor, y: Tensor | None = None) -> GANOutput:
        y = self.condition(x, y)
        fake, code = self._fake(x.shape[0], y, x.device)
        d_loss, real_logits, fake_logits, _ = self._losses(x, y, fake, code)
        g_loss, info = self._generator_loss(fake, y, code)
        return self._output(d_loss, g_loss, real_logits, fake_logits, info)

    def training_step(
        self, x: Tensor, y: Tensor, optimizers: dict[str, torch.optim.Optimizer], autocast: AbstractContextManager
    ) -> GANOutput:
        if x.shape[0] < 2:
            raise ConfigError("batch_size: GAN training needs at least 2 images per batch (BatchNorm statistics)")
        y = self.condition(x, y)
        opt_d, opt_g = optimizers["discriminator"], optimizers["generator"]
        with autocast:
            fake, code = self._fake(x.shape[0], y, x.device)
            d_loss, real_logits, fake_logits, _ = self._losses(x, y, fake, code)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        with autocast:
            g_loss, info = self._generator_loss(fake, y, code)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        self.update_ema()
        return detach_output(self._output(d_loss, g_loss, real_logits, fake_logits, info))

    @torch.no_grad()
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        labels = self._check_labels(labels, n)
        z = randn((n, self.config.latent_dim), generator, self.device)
        if self.config.clusters:  # a cluster per sample, with its share of the training images
            u = rand((n,), generator, self.device)
            labels = torch.searchsorted(self.cluster_weights.cumsum(0), u).clamp_max(self.config.clusters - 1)
        code = None
        if self.config.latent_codes:  # uniform over the code's values, as in training
            k = self.config.latent_codes
            code = (rand((n,), generator, self.device) * k).long().clamp_max(k - 1)
        return (self.generate(z, labels, code=code, averaged=True).float() + 1) / 2


@register_model("cgan")
class CGAN(GAN):
    """Class-conditional DCGAN: one-hot labels join z; the discriminator adds a learned per-class map."""

    config_class = CGANConfig
