"""DCGAN (Radford et al. 2016) and its class-conditional variant, sized for 28x28-style images."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from genlib.errors import ConfigError
from genlib.models.base import GANOutput, GenerativeModel, ModelConfig, detach_output, randn
from genlib.models.layers import check_conv_shape
from genlib.models.registry import register_model


class GANConfig(ModelConfig):
    """DCGAN hyper-parameters; Adam(2e-4, beta1=0.5) as in the paper."""

    model_name: Literal["gan"] = "gan"
    latent_dim: int = Field(100, gt=0)
    generator_features: int = Field(64, gt=0)
    discriminator_features: int = Field(64, gt=0)
    lr: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)  # real target = 1 - label_smoothing


class CGANConfig(GANConfig):
    model_name: Literal["cgan"] = "cgan"  # type: ignore[assignment]


def _dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) weights as in the DCGAN paper."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """z (B, latent_dim [+ classes]) -> images (B, C, H, W) in [-1, 1]."""

    def __init__(self, config: GANConfig, cond: int) -> None:
        super().__init__()
        c, _, _ = config.image_shape
        self.h, self.w = check_conv_shape(config.image_shape, 2)
        f = config.generator_features
        self.f2 = 2 * f
        self.project = nn.Sequential(
            nn.Linear(config.latent_dim + cond, self.f2 * self.h * self.w, bias=False),
            nn.BatchNorm1d(self.f2 * self.h * self.w),
            nn.ReLU(True),
        )
        self.body = nn.Sequential(
            nn.ConvTranspose2d(self.f2, f, 4, 2, 1, bias=False),
            nn.BatchNorm2d(f),
            nn.ReLU(True),
            nn.ConvTranspose2d(f, c, 4, 2, 1),
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.project(z).view(-1, self.f2, self.h, self.w))


class Discriminator(nn.Module):
    """images (B, C [+ classes], H, W) in [-1, 1] -> logits (B,)."""

    def __init__(self, config: GANConfig, cond: int) -> None:
        super().__init__()
        c, _, _ = config.image_shape
        h, w = check_conv_shape(config.image_shape, 2)
        f = config.discriminator_features
        self.body = nn.Sequential(
            nn.Conv2d(c + cond, f, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(f, 2 * f, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * f),
            nn.LeakyReLU(0.2, True),
            nn.Flatten(),
            nn.Linear(2 * f * h * w, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).squeeze(-1)


@register_model("gan")
class GAN(GenerativeModel):
    """DCGAN with the non-saturating loss; the discriminator is updated first, then the generator."""

    config_class = GANConfig
    # What it can do (reconstructs, generates, likelihood, ...) is declared in genlib/models/catalog.py.

    def __init__(self, config: GANConfig) -> None:
        super().__init__(config)
        cond = config.num_classes if self.conditional else 0
        self.generator = Generator(config, cond)
        self.discriminator = Discriminator(config, cond)
        self.apply(_dcgan_init)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.config.beta1, 0.999)
        return {
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=self.config.lr, betas=betas),
            "generator": torch.optim.Adam(self.generator.parameters(), lr=self.config.lr, betas=betas),
        }

    def generate(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z (B, latent_dim) [, y (B,)] -> images in [-1, 1], (B, C, H, W)."""
        if self.conditional:
            z = torch.cat([z, F.one_hot(y, self.config.num_classes).to(z.dtype)], 1)
        return self.generator(z)

    def discriminate(self, x_pm1: Tensor, y: Tensor | None = None) -> Tensor:
        """Images in [-1, 1] (B, C, H, W) [, y] -> logits (B,)."""
        if self.conditional:
            maps = F.one_hot(y, self.config.num_classes).to(x_pm1.dtype)[:, :, None, None]
            x_pm1 = torch.cat([x_pm1, maps.expand(-1, -1, *x_pm1.shape[2:])], 1)
        return self.discriminator(x_pm1)

    def _losses(self, x: Tensor, y: Tensor | None, fake: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        real_logits = self.discriminate(x * 2 - 1, y).float()
        fake_logits = self.discriminate(fake.detach(), y).float()
        real_target = torch.full_like(real_logits, 1.0 - self.config.label_smoothing)
        d_loss = F.binary_cross_entropy_with_logits(real_logits, real_target) + F.binary_cross_entropy_with_logits(
            fake_logits, torch.zeros_like(fake_logits)
        )
        return d_loss, real_logits, fake_logits, real_target

    def _fake(self, n: int, y: Tensor | None, device: torch.device) -> Tensor:
        return self.generate(torch.randn(n, self.config.latent_dim, device=device), y)

    def loss(self, x: Tensor, y: Tensor | None = None) -> GANOutput:
        y = y if self.conditional else None
        fake = self._fake(x.shape[0], y, x.device)
        d_loss, real_logits, fake_logits, _ = self._losses(x, y, fake)
        g_logits = self.discriminate(fake, y).float()
        g_loss = F.binary_cross_entropy_with_logits(g_logits, torch.ones_like(g_logits))
        return GANOutput(
            loss=d_loss + g_loss,
            d_loss=d_loss,
            g_loss=g_loss,
            d_real=torch.sigmoid(real_logits).mean(),
            d_fake=torch.sigmoid(fake_logits).mean(),
        )

    def training_step(
        self, x: Tensor, y: Tensor, optimizers: dict[str, torch.optim.Optimizer], autocast: AbstractContextManager
    ) -> GANOutput:
        if x.shape[0] < 2:
            raise ConfigError("batch_size: GAN training needs at least 2 images per batch (BatchNorm statistics)")
        y = y if self.conditional else None
        opt_d, opt_g = optimizers["discriminator"], optimizers["generator"]
        with autocast:
            fake = self._fake(x.shape[0], y, x.device)
            d_loss, real_logits, fake_logits, _ = self._losses(x, y, fake)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        with autocast:
            # Non-saturating generator loss: maximise log D(G(z)) rather than minimise log(1 - D(G(z))).
            g_logits = self.discriminate(fake, y).float()
            g_loss = F.binary_cross_entropy_with_logits(g_logits, torch.ones_like(g_logits))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        out = GANOutput(
            loss=d_loss + g_loss,
            d_loss=d_loss,
            g_loss=g_loss,
            d_real=torch.sigmoid(real_logits).mean(),
            d_fake=torch.sigmoid(fake_logits).mean(),
        )
        return detach_output(out)

    @torch.no_grad()
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        labels = self._check_labels(labels, n)
        z = randn((n, self.config.latent_dim), generator, self.device)
        return (self.generate(z, labels).float() + 1) / 2


@register_model("cgan")
class CGAN(GAN):
    """Class-conditional DCGAN: one-hot labels join z and, as constant maps, the discriminator's input."""

    config_class = CGANConfig
