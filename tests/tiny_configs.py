"""Tiny per-model config overrides shared by the test suites: every registered model in milliseconds."""

TINY: dict[str, dict] = {
    "ae": {"hidden_dims": (16,), "latent_dim": 4},
    "conv-ae": {"channels": (4, 8), "latent_dim": 4},
    "dae": {"hidden_dims": (16,), "latent_dim": 4, "noise_level": 0.3},
    "vae": {"hidden_dims": (16,), "latent_dim": 3},
    "cvae": {"hidden_dims": (16,), "latent_dim": 3},
    "gan": {"latent_dim": 4, "generator_features": 4, "discriminator_features": 4},
    "cgan": {"latent_dim": 4, "generator_features": 4, "discriminator_features": 4},
    "rbm": {"hidden_units": 8, "sample_steps": 3},
}
