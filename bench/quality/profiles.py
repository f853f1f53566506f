"""The quality benchmark's presets, registered as profiles of genlib's one preset system.

``quality-full`` is paper scale (the ``full`` training presets, meant for a GPU worker);
``quality-cpu-long`` (about 50 minutes on 2 cores) and ``quality-cpu-short`` (about 20) keep the
architectures and cut epochs and draws; ``quality-smoke`` runs every stage in seconds (tests only;
its numbers mean nothing). A run's settings are then resolved like any other run's, by
:func:`genlib.spec.resolve_spec` and :func:`genlib.spec.resolve_eval`, overrides included.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from genlib.errors import ConfigError
from genlib.evaluation.profiles import EvalProfile
from genlib.models import get_config_class
from genlib.presets import Profile, get_profile
from genlib.spec import Overrides, RunSpec, derive_profile, parse_set, resolve_eval, resolve_spec
from genlib.spec import data_shape as spec_data_shape

PRESETS = ("full", "cpu-long", "cpu-short", "smoke")
# Training images per preset (the data, not a model, training or evaluation setting); absent: all 50,000.
TRAIN_IMAGES: dict[str, int] = {"smoke": 600}


def profile_name(preset: str) -> str:
    """The registered profile of a ``--preset`` name."""
    return f"quality-{preset}"


def _register(preset: str, *, epochs: dict[str, int], model: dict[str, dict[str, Any]], generator_steps: int,
              **evaluation: Any) -> Profile:
    """Register ``quality-<preset>``: the ``full`` presets of the families in ``epochs`` with those epochs
    (early stopping off where it could not trigger) and the ``model`` changes, and the ``full``
    evaluation profile with the ``evaluation`` changes."""
    full = get_profile("full")

    def train(name: str, n: int) -> dict[str, Any]:
        patience = full.preset(name).train.patience
        return {"epochs": n, "patience": patience if (patience or 0) <= n else None}

    families = {name: {"model": model.get(name, {}), "train": train(name, n)} for name, n in epochs.items()}
    evaluation = {
        "augment_budgets": (100,),
        "pretrain_latent": 30,  # the fine-tuned encoder is the 30-dim deep AE of the first stage
        "generator_steps": {g: generator_steps for g in full.evaluation.generator_steps},
        **evaluation,
    }
    return derive_profile(profile_name(preset), "full", families, evaluation, f"bench.quality --preset {preset}")


_register(
    "full",
    epochs={"ae": 200, "vae": 500, "rbm": 100, "gan": 30, "cgan": 30}, model={"rbm": {"cd_k": 25}}, generator_steps=3000,
    iwae_k=5000, likelihood_images=None, ais_betas=14500, ais_chains=100, fid_samples=10000,
    label_budgets=(100, 600, 1000, 3000), seeds=(0, 1, 2), finetune_steps=2000, augment_steps=2000,
    classifier_epochs=10,
)
_register(
    "cpu-long",  # ten times the epochs of cpu-short, paper-scale IWAE k and AIS schedule
    epochs={"ae": 60, "vae": 100, "rbm": 15, "gan": 5, "cgan": 5}, model={"rbm": {"cd_k": 10}}, generator_steps=1500,
    iwae_k=5000, likelihood_images=1000, ais_betas=14500, ais_chains=100, fid_samples=5000,
    label_budgets=(100, 600, 1000, 3000), seeds=(0, 1, 2), finetune_seeds=(0, 1, 2), finetune_steps=600,
    augment_steps=600, classifier_epochs=4,
)
_register(
    "cpu-short",
    epochs={"ae": 6, "vae": 8, "rbm": 2, "gan": 1, "cgan": 1}, model={"rbm": {"cd_k": 1}}, generator_steps=600,
    iwae_k=500, likelihood_images=1000, ais_betas=5000, ais_chains=50, fid_samples=2000,
    label_budgets=(100, 600, 1000, 3000), seeds=(0, 1, 2), finetune_steps=300, augment_steps=300,
    classifier_epochs=2,
)
_register(
    "smoke",
    epochs={"ae": 1, "vae": 1, "rbm": 1, "gan": 1, "cgan": 1}, model={"rbm": {"cd_k": 1}}, generator_steps=5,
    iwae_k=10, likelihood_images=50, ais_betas=50, ais_chains=5, fid_samples=100, label_budgets=(100,),
    seeds=(0,), finetune_steps=5, augment_steps=5, classifier_epochs=1,
)


@dataclasses.dataclass(frozen=True)
class QualityRun:
    """One quality run's settings: the registered profile, the user's overrides, the resolved evaluation."""

    profile: str
    overrides: Overrides
    evaluation: EvalProfile

    @property
    def families(self) -> list[str]:
        return sorted(get_profile(self.profile).families)

    def spec(self, family: str, data: Any | None = None) -> RunSpec:
        """The RunSpec of ``family`` (shaped for ``data`` when given); model overrides go to the families
        whose config has the field, training and evaluation overrides to every family."""
        fields = get_config_class(family).model_fields
        ov = Overrides(model={k: v for k, v in self.overrides.model.items() if k in fields},
                       train=self.overrides.train, evaluation=self.overrides.evaluation)
        return resolve_spec(self.profile, family, ov, spec_data_shape(data) if data is not None else None)


def resolve_run(preset: str, assignments: list[str]) -> QualityRun:
    """The run of ``--preset`` with ``--set FIELD=VALUE`` assignments, every spec validated now (before any
    data is loaded). Raises ConfigError (one line) for an unknown field, a bad value, or a model field that
    no family of the preset has."""
    profile = profile_name(preset)
    overrides = parse_set(assignments)
    run = QualityRun(profile, overrides, resolve_eval(profile, overrides))
    homeless = [k for k in overrides.model if not any(k in get_config_class(f).model_fields for f in run.families)]
    if homeless:
        raise ConfigError(f"--set {homeless[0]}: no model of this benchmark ({', '.join(run.families)}) has that field")
    for family in run.families:
        run.spec(family)
    return run
