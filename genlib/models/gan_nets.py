"""The DCGAN networks (Radford et al. 2016) for 28x28-style images: generator, discriminator, their init.

The GAN model (genlib/models/gan.py) owns the losses, optimisers and sampling; these modules only map
tensors. ``cond`` is the size of the one-hot condition: classes (the cGAN), clusters (the
self-conditioned GAN) and InfoGAN code values for the generator; classes or clusters for the discriminator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlib.models.layers import check_conv_shape

if TYPE_CHECKING:
    from genlib.models.gan import GANConfig


def dcgan_init(module: nn.Module) -> None:
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

    def __init__(self, config: "GANConfig", cond: int) -> None:
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
    """images (B, C, H, W) in [-1, 1] [, labels (B,)] -> logits (B,).

    A conditional discriminator adds a learned per-class map (f, H/2, W/2) after its first conv. That is
    the same function class as joining constant one-hot maps to the input (a conv of a constant map is a
    fixed map), at the cost of a conv over C channels instead of C + classes.
    """

    def __init__(self, config: "GANConfig", cond: int) -> None:
        super().__init__()
        c, _, _ = config.image_shape
        h, w = check_conv_shape(config.image_shape, 2)
        f = config.discriminator_features
        codes = config.latent_codes
        self.stem_shape = (f, 2 * h, 2 * w)
        self.body = nn.Sequential(
            nn.Conv2d(c, f, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(f, 2 * f, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * f),
            nn.LeakyReLU(0.2, True),
            nn.Flatten(),
            nn.Linear(2 * f * h * w, 1),
        )
        self.class_bias = nn.Embedding(cond, f * 4 * h * w) if cond else None
        self.code_head = nn.Linear(2 * f * h * w, codes) if codes else None  # InfoGAN's Q(c|x)

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """(B, 2f * H/4 * W/4): what the real/fake logit (and the code head) read."""
        h = self.body[0](x)
        if self.class_bias is not None:
            h = h + self.class_bias(y).view(-1, *self.stem_shape).to(h.dtype)
        return self.body[1:-1](h)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.body[-1](self.features(x, y)).squeeze(-1)

    def with_code(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Real/fake logits (B,) and code logits (B, latent_codes) from one pass."""
        h = self.features(x, y)
        return self.body[-1](h).squeeze(-1), self.code_head(h)


def one_hot_maps_as_class_bias(weight: Tensor, image_channels: int, spatial: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Split a first conv over [image, one-hot maps] into (image conv weight, per-class bias maps).

    Args: weight (f, C + classes, 4, 4) of the stride-2, padding-1 conv; spatial (H, W) of the input.
    Returns: (f, C, 4, 4) and (classes, f * H/2 * W/2), the maps the constant one-hot planes produced
    (zero padding included), so an old checkpoint's discriminator computes exactly what it did.
    """
    label_w = weight[:, image_channels:].transpose(0, 1).unsqueeze(2)  # (classes, f, 1, 4, 4)
    ones = torch.ones(1, 1, *spatial, dtype=weight.dtype)
    maps = torch.stack([F.conv2d(ones, w, stride=2, padding=1)[0] for w in label_w])  # (classes, f, H/2, W/2)
    return weight[:, :image_channels].contiguous(), maps.flatten(1)
