"""Shared pieces of every model family: config base, typed loss outputs, the model base class."""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn


class ModelConfig(BaseModel):
    """Frozen, validated hyper-parameters; ``model_name`` says which registered model they build.

    Device, paths and tracking URIs are deliberately not here: they are not hyper-parameters.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model_name: str
    image_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = Field(10, gt=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)

    @field_validator("image_shape")
    @classmethod
    def _positive_shape(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(d <= 0 for d in v):
            raise ValueError("every dimension must be positive")
        return v

    @property
    def input_dim(self) -> int:
        c, h, w = self.image_shape
        return c * h * w


@dataclasses.dataclass
class LossOutput:
    """Base of the typed loss outputs. ``loss`` is the scalar optimised (or monitored).

    Subclasses add named terms; ``terms()`` gives them all by name (0-d tensors, not yet synced to
    the host, so a loop can sum them on the device).
    """

    loss: Tensor

    def terms(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass
class AEOutput(LossOutput):
    """Autoencoder loss: ``recon`` is the reconstruction loss per image (summed over pixels)."""

    recon: Tensor


@dataclasses.dataclass
class VAEOutput(LossOutput):
    """Negative ELBO per image = ``recon`` + ``beta`` * ``kl`` (nats, summed over pixels/latents)."""

    recon: Tensor
    kl: Tensor


@dataclasses.dataclass
class GANOutput(LossOutput):
    """``loss`` = d_loss + g_loss; d_real/d_fake are the discriminator's mean probabilities."""

    d_loss: Tensor
    g_loss: Tensor
    d_real: Tensor
    d_fake: Tensor


@dataclasses.dataclass
class InfoGANOutput(GANOutput):
    """A GAN with a latent code: ``info`` is the code head's cross-entropy on the generator's step, also
    included (times ``info_weight``) in both ``d_loss`` and ``g_loss``."""

    info: Tensor


@dataclasses.dataclass
class RBMOutput(LossOutput):
    """RBM monitors: ``loss`` = ``recon`` (squared error per image after one Gibbs step).

    ``free_energy_gap`` is mean F(data) - F(model samples); training pushes it down.
    """

    recon: Tensor
    free_energy_gap: Tensor


def autocast_context(device: torch.device) -> AbstractContextManager:
    """bf16 autocast on accelerators only; on CPU it would be slower and less exact."""
    if device.type == "cpu":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class GenerativeModel(nn.Module):
    """Base class of every registered model.

    Class attributes tell callers what a model can do, so no code branches on model names:
    ``reconstructs`` (has encode/decode/reconstruct), ``generates`` (has sample),
    ``conditional`` (takes labels), ``uses_autograd`` (False for the RBM), ``likelihood``
    (None; ``"variational"``: ELBO and importance-weighted bounds; ``"energy"``: an unnormalised
    model scored by pseudo-likelihood and AIS). Instance properties ``binarized_inputs`` and
    ``noise`` say how inputs are treated (they depend on the config). Built-in families get the class
    attributes from ``genlib.models.catalog`` when they register.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    reconstructs: ClassVar[bool] = False
    generates: ClassVar[bool] = False
    conditional: ClassVar[bool] = False
    uses_autograd: ClassVar[bool] = True
    likelihood: ClassVar[Literal["variational", "energy"] | None] = None
    # The key metric for comparing versions of this family, and whether lower is better.
    primary_metric: ClassVar[str] = "test_loss"
    primary_metric_lower_is_better: ClassVar[bool] = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    # --- training protocol -------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by name; one Adam by default."""
        return {
            "model": adam(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        }

    def loss(self, x: Tensor, y: Tensor | None = None) -> LossOutput:
        """Loss on a batch. Args: x (B, C, H, W) in [0, 1]; y (B,) int64 labels."""
        raise NotImplementedError

    def training_step(
        self, x: Tensor, y: Tensor, optimizers: dict[str, torch.optim.Optimizer], autocast: AbstractContextManager
    ) -> LossOutput:
        """One optimisation step on a batch; families with several optimizers override it."""
        opt = optimizers["model"]
        opt.zero_grad(set_to_none=True)
        with autocast:
            out = self.loss(x, y)
        out.loss.backward()
        opt.step()
        return detach_output(out)

    @torch.no_grad()
    def evaluation_loss(self, x: Tensor, y: Tensor) -> LossOutput:
        """Loss on a batch without updating anything (validation / test)."""
        return detach_output(self.loss(x, y))

    def extra_metrics(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Family-specific per-batch metrics (means over the batch), e.g. the RBM's pseudo-likelihood."""
        return {}

    # --- capabilities (overridden where they exist) ---------------------------------------
    @property
    def binarized_inputs(self) -> bool:
        """True when the model trains on (and is scored on) stochastic binarisations of the grey levels."""
        return bool(getattr(self.config, "binarize", False))

    @property
    def noise(self) -> tuple[str, float] | None:
        """(kind, level) of the input corruption a denoising model is trained to undo; None for the others."""
        return None

    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Reconstruction in [0, 1]. Args: x (B, C, H, W). Returns (B, C, H, W)."""
        raise NotImplementedError(f"{self.name} does not reconstruct")

    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw n images in [0, 1], shape (n, C, H, W); labels (n,) for conditional models."""
        raise NotImplementedError(f"{self.name} does not generate")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_labels(self, labels: Tensor | None, n: int) -> Tensor | None:
        if not self.conditional:
            return None
        if labels is None:
            labels = torch.arange(n, device=self.device) % self.config.num_classes
        labels = torch.as_tensor(labels, device=self.device, dtype=torch.long)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.config.num_classes):
            raise ValueError(f"labels must be in [0, {self.config.num_classes - 1}]")
        return labels


def detach_output(out: LossOutput) -> LossOutput:
    return dataclasses.replace(out, **{k: v.detach() for k, v in out.terms().items()})


def adam(params: Any, **kwargs: Any) -> torch.optim.Adam:
    """``torch.optim.Adam(params, **kwargs)`` on torch's fused kernel where it has one for the parameters'
    device and dtype (CPU and CUDA float tensors): the same update, to float rounding, in one pass per
    tensor rather than a dozen allocating ones, which matters for small models, whose step the optimizer
    takes a large share of on a CPU thread (docs/benchmarks.md, "Against peer libraries")."""
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except RuntimeError:  # no fused kernel for this device or dtype
        return torch.optim.Adam(params, **kwargs)


def randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Gaussian noise drawn on the generator's device then moved, so a CPU generator works for CUDA models."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device).to(device)


def rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform [0, 1) noise drawn on the generator's device then moved, so a CPU generator works for CUDA models."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def bernoulli(p: Tensor, generator: torch.Generator | None = None, out: Tensor | None = None) -> Tensor:
    """0/1 draws with probabilities p (any shape), in p's dtype, into ``out`` when given.

    uniform < p rather than torch.bernoulli: the same distribution, and faster on a CPU core. The comparison
    writes floats directly, because turning a bool result into floats costs several times the comparison
    itself (docs/benchmarks.md, History: "Throughput").
    """
    u = rand(tuple(p.shape), generator, p.device)
    return torch.lt(u, p, out=torch.empty_like(p) if out is None else out)


def config_dict(config: ModelConfig) -> dict[str, Any]:
    """JSON/torch.load(weights_only)-safe dict of a config (tuples become lists)."""
    return config.model_dump(mode="json")
