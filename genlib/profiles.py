"""Named training profiles: per-family hyper-parameters for ``quick`` (CPU, digits, minutes) and ``full``
(paper-scale MNIST settings, meant for a GPU worker). Plain data, shared by the CLI, flows and benchmarks."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from genlib.errors import UnknownNameError

ProfileName = Literal["quick", "full"]


@dataclasses.dataclass(frozen=True)
class FamilySettings:
    """Model config overrides and TrainConfig values for one family in one profile."""

    model: dict[str, Any]
    train: dict[str, Any]


PROFILES: dict[str, dict[str, FamilySettings]] = {
    "quick": {
        "ae": FamilySettings({"hidden_dims": (256, 128), "latent_dim": 32}, {"epochs": 30, "batch_size": 64}),
        "conv-ae": FamilySettings({"channels": (16, 32), "latent_dim": 32}, {"epochs": 15, "batch_size": 64}),
        "dae": FamilySettings(
            {"hidden_dims": (256, 128), "latent_dim": 32, "noise": "masking", "noise_level": 0.3},
            {"epochs": 30, "batch_size": 64},
        ),
        "vae": FamilySettings({"hidden_dims": (256, 128), "latent_dim": 16}, {"epochs": 40, "batch_size": 64}),
        "cvae": FamilySettings({"hidden_dims": (256, 128), "latent_dim": 16}, {"epochs": 40, "batch_size": 64}),
        "gan": FamilySettings(
            {"latent_dim": 64, "generator_features": 32, "discriminator_features": 32}, {"epochs": 20, "batch_size": 64}
        ),
        "cgan": FamilySettings(
            {"latent_dim": 64, "generator_features": 32, "discriminator_features": 32}, {"epochs": 20, "batch_size": 64}
        ),
        "rbm": FamilySettings({"hidden_units": 128, "cd_k": 1, "lr": 0.05}, {"epochs": 30, "batch_size": 32}),
    },
    "full": {
        # Hinton & Salakhutdinov (2006): 784-1000-500-250-30 (trained here with Adam, no RBM pre-training).
        "ae": FamilySettings(
            {"hidden_dims": (1000, 500, 250), "latent_dim": 30, "recon_loss": "bce"},
            {"epochs": 200, "batch_size": 128, "patience": 20, "lr_schedule": "cosine"},
        ),
        "conv-ae": FamilySettings(
            {"channels": (32, 64), "latent_dim": 30},
            {"epochs": 100, "batch_size": 128, "patience": 15, "lr_schedule": "cosine"},
        ),
        "dae": FamilySettings(
            {"hidden_dims": (1000, 500, 250), "latent_dim": 30, "noise": "masking", "noise_level": 0.25},
            {"epochs": 200, "batch_size": 128, "patience": 20, "lr_schedule": "cosine"},
        ),
        # IWAE paper's one-stochastic-layer VAE: 784-200-200-50, tanh, dynamically binarised inputs.
        "vae": FamilySettings(
            {"hidden_dims": (200, 200), "latent_dim": 50, "activation": "tanh", "binarize": True},
            {"epochs": 500, "batch_size": 100, "patience": 50, "lr_schedule": "cosine"},
        ),
        "cvae": FamilySettings(
            {"hidden_dims": (500, 500), "latent_dim": 50, "activation": "relu", "binarize": True},
            {"epochs": 200, "batch_size": 100, "patience": 30, "lr_schedule": "cosine"},
        ),
        # DCGAN at its usual settings: Adam 2e-4, beta1 0.5, batch 128, 64 base features.
        "gan": FamilySettings({"latent_dim": 100, "generator_features": 64, "discriminator_features": 64}, {"epochs": 30, "batch_size": 128}),
        "cgan": FamilySettings({"latent_dim": 100, "generator_features": 64, "discriminator_features": 64}, {"epochs": 30, "batch_size": 128}),
        # Salakhutdinov & Murray (2008): 500 hidden units, CD-25 for their best model.
        "rbm": FamilySettings(
            {"hidden_units": 500, "cd_k": 25, "lr": 0.05, "momentum": 0.9, "weight_decay": 2e-4},
            {"epochs": 100, "batch_size": 100},
        ),
    },
}


def profile_names() -> list[str]:
    return sorted(PROFILES)


def family_settings(profile: str, family: str) -> FamilySettings:
    """Settings of ``family`` in ``profile``; unknown names raise UnknownNameError listing the valid ones."""
    try:
        families = PROFILES[profile]
    except KeyError:
        raise UnknownNameError(f"unknown profile {profile!r}; valid profiles: {', '.join(profile_names())}") from None
    try:
        return families[family]
    except KeyError:
        raise UnknownNameError(f"profile {profile!r} has no settings for {family!r}; valid: {', '.join(sorted(families))}") from None
