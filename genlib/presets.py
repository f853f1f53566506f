"""Named profiles as typed presets: per family a model config and a TrainConfig, plus one evaluation
profile. ``quick`` is the default ``make run`` on a 10,000-image MNIST subset on 2 CPU cores; ``full`` is
paper scale (meant for a GPU worker). Benchmarks register further profiles with :func:`register_profile`.

Only :func:`genlib.spec.resolve_spec` merges user overrides into these presets.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from genlib.errors import UnknownNameError
from genlib.evaluation.profiles import PROFILES as EVAL_PROFILES
from genlib.evaluation.profiles import EvalProfile
from genlib.models import AnyModelConfig, make_config
from genlib.training.config import TrainConfig


class FamilyPreset(BaseModel):
    """One family's settings in one profile: the model config (image shape and classes are replaced by the
    data's when a spec is resolved) and how to train it."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: AnyModelConfig  # type: ignore[valid-type]
    train: TrainConfig


class Profile(BaseModel):
    """A named set of presets: one per family, and the evaluation settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    families: dict[str, FamilyPreset]
    evaluation: EvalProfile
    description: str = ""

    def preset(self, family: str) -> FamilyPreset:
        try:
            return self.families[family]
        except KeyError:
            raise UnknownNameError(f"profile {self.name!r} has no settings for {family!r}; "
                                   f"valid: {', '.join(sorted(self.families))}") from None


def preset(family: str, model: dict[str, Any], **train: Any) -> FamilyPreset:
    """A FamilyPreset from plain values (validated here, at import)."""
    return FamilyPreset(model=make_config(family, model), train=TrainConfig(**train))


_PROFILES: dict[str, Profile] = {}


def register_profile(profile: Profile) -> Profile:
    """Add a named profile; refuses a name already taken."""
    if profile.name in _PROFILES:
        raise ValueError(f"profile {profile.name!r} is already registered")
    _PROFILES[profile.name] = profile
    return profile


def profile_names() -> list[str]:
    return sorted(_PROFILES)


def get_profile(name: str) -> Profile:
    try:
        return _PROFILES[name]
    except KeyError:
        raise UnknownNameError(f"unknown profile {name!r}; valid profiles: {', '.join(profile_names())}") from None


_MLP = (256, 128)
_VAE = {"hidden_dims": (512, 256), "latent_dim": 10}
# 16 base features: on 2 CPU cores a wider DCGAN cannot train enough steps in make run's minutes
# (docs/benchmarks.md, "Sample quality presets").
_GAN = {"latent_dim": 64, "generator_features": 16, "discriminator_features": 16}

register_profile(Profile(
    name="quick",
    description="make run: minutes on 2 CPU cores, a 10,000-image MNIST subset",
    evaluation=EVAL_PROFILES["quick"],
    families={
        # 10 epochs: far past the reconstruction gate (0.75 x the mean-image baseline) on the 10k subset.
        "ae": preset("ae", {"hidden_dims": _MLP, "latent_dim": 32}, epochs=10, batch_size=64),
        "conv-ae": preset("conv-ae", {"channels": (16, 32), "latent_dim": 32}, epochs=6, batch_size=64),
        "dae": preset("dae", {"hidden_dims": _MLP, "latent_dim": 32, "noise": "masking", "noise_level": 0.3},
                      epochs=10, batch_size=64),
        # Wider, with a 10-d code, and a learned mixture-of-Gaussians prior (50 components) that follows the
        # aggregate posterior: samples from N(0, I) land where the posterior put no digit, so fewer are
        # recognised, and the ELBO is worse too (docs/benchmarks.md, "Sample quality presets").
        "vae": preset("vae", {**_VAE, "prior": "mog", "prior_components": 50}, epochs=36, batch_size=64),
        "cvae": preset("cvae", _VAE, epochs=30, batch_size=64),
        # Adam 1e-3 rather than DCGAN's 2e-4 (and the generator's moving average, the default): with only
        # minutes of compute the larger step is what gets the cGAN's samples recognised in 10 epochs. The plain
        # unconditional GAN gains less, because its samples fall between digits; conditioned on 50 k-means
        # clusters of the training images (self-conditioning, no labels) it draws recognisable digits in the
        # same epochs (docs/benchmarks.md, "Sample quality presets").
        "gan": preset("gan", {**_GAN, "lr": 1e-3, "clusters": 50}, epochs=10, batch_size=64),
        "cgan": preset("cgan", {**_GAN, "lr": 1e-3}, epochs=10, batch_size=64),
        # Persistent CD (Tieleman 2008): its samples come from 300 Gibbs sweeps started from uniform noise;
        # CD-1 learns good features but samples of grey blots. The learning rate decays to zero (cosine), as
        # Tieleman advises for PCD: at a constant rate the chains from noise fall into one or two digits, which
        # ones depending on the seed; decayed, every digit is drawn (docs/benchmarks.md, "Sample quality
        # presets").
        "rbm": preset("rbm", {"hidden_units": 256, "cd_k": 1, "persistent": True, "lr": 0.05, "weight_decay": 1e-4,
                              "sample_steps": 300}, epochs=20, batch_size=64, lr_schedule="cosine"),
    },
))

register_profile(Profile(
    name="full",
    description="paper scale on the 50,000 MNIST training images; meant for a GPU worker",
    evaluation=EVAL_PROFILES["full"],
    families={
        # Hinton & Salakhutdinov (2006): 784-1000-500-250-30, logistic units, greedy RBM pre-training
        # (10 epochs per layer, as their code), unrolled and fine-tuned.
        "ae": preset("ae", {"hidden_dims": (1000, 500, 250), "latent_dim": 30, "recon_loss": "bce",
                            "activation": "sigmoid", "pretrain": "rbm", "pretrain_epochs": 10, "lr": 3e-4},
                     epochs=200, batch_size=128, patience=20, lr_schedule="cosine"),
        "conv-ae": preset("conv-ae", {"channels": (32, 64), "latent_dim": 30},
                          epochs=100, batch_size=128, patience=15, lr_schedule="cosine"),
        "dae": preset("dae", {"hidden_dims": (1000, 500, 250), "latent_dim": 30, "noise": "masking",
                              "noise_level": 0.25},
                      epochs=200, batch_size=128, patience=20, lr_schedule="cosine"),
        # IWAE paper's one-stochastic-layer VAE: 784-200-200-50, tanh, dynamically binarised inputs.
        "vae": preset("vae", {"hidden_dims": (200, 200), "latent_dim": 50, "activation": "tanh", "binarize": True},
                      epochs=500, batch_size=100, patience=50, lr_schedule="cosine"),
        "cvae": preset("cvae", {"hidden_dims": (500, 500), "latent_dim": 50, "activation": "relu", "binarize": True},
                       epochs=200, batch_size=100, patience=30, lr_schedule="cosine"),
        # DCGAN at its usual settings: Adam 2e-4, beta1 0.5, batch 128, 64 base features.
        "gan": preset("gan", {"latent_dim": 100, "generator_features": 64, "discriminator_features": 64},
                      epochs=30, batch_size=128),
        "cgan": preset("cgan", {"latent_dim": 100, "generator_features": 64, "discriminator_features": 64},
                       epochs=30, batch_size=128),
        # Salakhutdinov & Murray (2008): 500 hidden units, CD-25 for their best model.
        "rbm": preset("rbm", {"hidden_units": 500, "cd_k": 25, "lr": 0.05, "momentum": 0.9, "weight_decay": 2e-4},
                      epochs=100, batch_size=100),
    },
))

# The profiles the flows and the CLI offer (a Literal, so Prefect's form shows a choice). Benchmarks may
# register more; those are reachable through genlib.spec.resolve_spec, not the deployment form.
ProfileName = Literal["quick", "full"]
