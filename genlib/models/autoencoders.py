"""Deterministic autoencoders: dense ``ae``, convolutional ``conv-ae`` and denoising ``dae``."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from genlib.models.base import AEOutput, GenerativeModel, ModelConfig, rand, randn
from genlib.models.layers import ConvDecoder, ConvEncoder, mlp
from genlib.models.registry import register_model


def reconstruction_loss(logits: Tensor, x: Tensor, kind: str) -> Tensor:
    """Per-image reconstruction loss summed over pixels. logits, x: (B, C, H, W). Returns (B,)."""
    if kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
    else:
        per_pixel = (torch.sigmoid(logits.float()) - x.float()) ** 2
    return per_pixel.flatten(1).sum(1)


class AEConfig(ModelConfig):
    """Dense autoencoder. Hinton & Salakhutdinov's deep AE is hidden_dims=(1000, 500, 250), latent_dim=30."""

    model_name: Literal["ae"] = "ae"
    hidden_dims: tuple[int, ...] = (256, 128)
    latent_dim: int = Field(32, gt=0)
    recon_loss: Literal["bce", "mse"] = "bce"
    activation: Literal["relu", "sigmoid", "tanh"] = "relu"
    # "rbm": greedy layer-wise RBM pre-training, unrolled into encoder and decoder before fine-tuning
    # (Hinton & Salakhutdinov 2006; genlib.training.pretrain). Needs logistic (sigmoid) hidden units.
    pretrain: Literal["none", "rbm"] = "none"
    pretrain_epochs: int = Field(10, ge=1)

    @property
    def pretrains_with_rbms(self) -> bool:
        """True when training starts with the greedy RBM stack (asked for by genlib.training.pretrain)."""
        return self.pretrain == "rbm"

    @model_validator(mode="after")
    def _pretrain_needs_sigmoid(self) -> "AEConfig":
        if self.pretrain == "rbm" and self.activation != "sigmoid":
            raise ValueError("pretrain='rbm' unrolls logistic RBM units: set activation='sigmoid'")
        return self


_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


@register_model("ae")
class AE(GenerativeModel):
    """Dense autoencoder: (B, C, H, W) -> code (B, latent_dim) -> reconstruction (B, C, H, W).

    The code layer is linear, as in Hinton & Salakhutdinov (2006).
    """

    config_class = AEConfig
    # What it can do (reconstructs, generates, likelihood, ...) is declared in genlib/models/catalog.py.

    def __init__(self, config: AEConfig) -> None:
        super().__init__(config)
        act = _ACTIVATIONS[config.activation]
        dims = [config.input_dim, *config.hidden_dims]
        self.encoder = nn.Sequential(nn.Flatten(), mlp([*dims, config.latent_dim], act))
        self.decoder = mlp([config.latent_dim, *reversed(dims)], act)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """(B, C, H, W) -> (B, latent_dim); ``y`` is ignored (same signature as the other families)."""
        return self.encoder(x)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z).view(-1, *self.config.image_shape)

    def decode(self, z: Tensor) -> Tensor:
        """(B, latent_dim) -> images (B, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z).float())

    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decode(self.encode(x))

    def corrupt(self, x: Tensor) -> Tensor:
        """Input seen by the encoder during training (identity here; noisy for ``dae``)."""
        return x

    def loss(self, x: Tensor, y: Tensor | None = None) -> AEOutput:
        recon = reconstruction_loss(self.decode_logits(self.encode(self.corrupt(x))), x, self.config.recon_loss).mean()
        return AEOutput(loss=recon, recon=recon)


class ConvAEConfig(ModelConfig):
    """Convolutional autoencoder: stride-2 convs down, transposed convs up."""

    model_name: Literal["conv-ae"] = "conv-ae"
    channels: tuple[int, ...] = (32, 64)
    latent_dim: int = Field(32, gt=0)
    recon_loss: Literal["bce", "mse"] = "bce"


@register_model("conv-ae")
class ConvAE(AE):
    """Conv/deconv autoencoder with the same interface as ``ae``."""

    config_class = ConvAEConfig

    def __init__(self, config: ConvAEConfig) -> None:
        GenerativeModel.__init__(self, config)
        self.encoder = ConvEncoder(config.image_shape, config.channels, config.latent_dim)
        self.decoder = ConvDecoder(config.image_shape, config.channels, config.latent_dim)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z)


class DAEConfig(AEConfig):
    """Denoising autoencoder: a dense AE trained to map corrupted inputs to clean ones."""

    model_name: Literal["dae"] = "dae"  # type: ignore[assignment]
    noise: Literal["gaussian", "masking", "salt_pepper"] = "masking"
    noise_level: float = Field(0.3, ge=0.0, le=1.0)


def add_noise(x: Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> Tensor:
    """Corrupt images in [0, 1]. Args: x (B, C, H, W). Returns the same shape, still in [0, 1].

    gaussian: add N(0, level^2), clip; masking: zero each pixel with probability level;
    salt_pepper: set each pixel with probability level to 0 or 1 (equally likely).
    """
    if kind == "gaussian":
        return (x + level * randn(tuple(x.shape), generator, x.device)).clamp(0, 1)
    if kind == "masking":
        return x * (rand(tuple(x.shape), generator, x.device) >= level)
    if kind == "salt_pepper":
        flip = rand(tuple(x.shape), generator, x.device) < level
        salt = rand(tuple(x.shape), generator, x.device) < 0.5
        return torch.where(flip, salt.to(x.dtype), x)
    raise ValueError(f"unknown noise {kind!r}")


@register_model("dae")
class DAE(AE):
    """Denoising autoencoder; ``loss`` compares the reconstruction of a corrupted x with the clean x."""

    config_class = DAEConfig

    @property
    def noise(self) -> tuple[str, float]:
        return self.config.noise, float(self.config.noise_level)

    def corrupt(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return add_noise(x, self.config.noise, self.config.noise_level, generator)
