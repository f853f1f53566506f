"""What a quality run does: the paper-scale ``full`` preset and reduced ones that fit a CPU machine."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from genlib.evaluation import get_eval_profile


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a run does; defaults are the paper-scale ``full`` profile."""

    ae_epochs: int = 200
    vae_epochs: int = 500
    rbm_epochs: int = 100
    rbm_cd_k: int = 25
    gan_epochs: int = 30
    iwae_k: int = 5000
    likelihood_images: int | None = None  # None: all 10,000 test images
    ais_betas: int = 14500
    ais_chains: int = 100
    fid_samples: int = 10000
    label_budgets: tuple[int, ...] = (100, 600, 1000, 3000)
    seeds: tuple[int, ...] = (0, 1, 2)
    finetune_seeds: tuple[int, ...] | None = None  # None: the full evaluation profile's five
    finetune_steps: int = 2000
    augment_steps: int = 2000
    generator_steps: int = 3000
    classifier_epochs: int = 10
    train_subset: int | None = None  # None: the full 50,000 training images


PRESETS: dict[str, Settings] = {
    "full": Settings(),
    # Seconds: checks that every stage runs end to end (tests); its numbers mean nothing.
    "smoke": Settings(
        ae_epochs=1, vae_epochs=1, rbm_epochs=1, rbm_cd_k=1, gan_epochs=1, iwae_k=10, likelihood_images=50,
        ais_betas=50, ais_chains=5, fid_samples=100, label_budgets=(100,), seeds=(0,), finetune_steps=5,
        augment_steps=5, generator_steps=5, classifier_epochs=1, train_subset=600,
    ),
    # A CPU run of about half an hour on 2 cores: same architectures, far fewer epochs and draws.
    "cpu-short": Settings(
        ae_epochs=6,
        vae_epochs=8,
        rbm_epochs=2,
        rbm_cd_k=1,
        gan_epochs=1,
        iwae_k=500,
        likelihood_images=1000,
        ais_betas=5000,
        ais_chains=50,
        fid_samples=2000,
        label_budgets=(100, 600, 1000, 3000),
        seeds=(0, 1, 2),
        finetune_steps=300,
        augment_steps=300,
        generator_steps=600,
        classifier_epochs=2,
    ),
    # About an hour on 2 CPU cores: ten times the epochs of cpu-short, paper-scale IWAE k and AIS schedule.
    "cpu-long": Settings(
        ae_epochs=60,
        vae_epochs=100,
        rbm_epochs=15,
        rbm_cd_k=10,
        gan_epochs=5,
        iwae_k=5000,
        likelihood_images=1000,
        ais_betas=14500,
        ais_chains=100,
        fid_samples=5000,
        label_budgets=(100, 600, 1000, 3000),
        seeds=(0, 1, 2),
        finetune_seeds=(0, 1, 2),
        finetune_steps=600,
        augment_steps=600,
        generator_steps=1500,
        classifier_epochs=4,
    ),
}


def apply_overrides(s: Settings, assignments: list[str]) -> Settings:
    """``s`` with FIELD=VALUE assignments applied; values parse as JSON (tuples as lists), else stay strings."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    updates: dict[str, Any] = {}
    for item in assignments:
        name, sep, raw = item.partition("=")
        if not sep or name not in fields:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(fields)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"--set {item!r}: {raw!r} is not a number, list or null") from None
        nullable = "None" in str(fields[name].type)
        if value is None:
            if not nullable:
                raise ValueError(f"--set {item!r}: {name} cannot be null")
        elif "tuple" in str(fields[name].type):
            if not isinstance(value, list) or not value or not all(type(v) is int for v in value):
                raise ValueError(f"--set {item!r}: {name} takes a list of integers, e.g. [0,1,2]")
            value = tuple(value)
        elif type(value) is not int or value < 1:
            raise ValueError(f"--set {item!r}: {name} takes a positive integer")
        updates[name] = value
    return dataclasses.replace(s, **updates)


def eval_profile(s: Settings):
    """The ``full`` evaluation profile with this run's counts."""
    base = get_eval_profile("full")
    return base.model_copy(
        update={
            "iwae_k": s.iwae_k,
            "likelihood_images": s.likelihood_images,
            "ais_betas": s.ais_betas,
            "ais_chains": s.ais_chains,
            "fid_samples": s.fid_samples,
            "label_budgets": s.label_budgets,
            "augment_budgets": (100,),
            "seeds": s.seeds,
            **({"finetune_seeds": s.finetune_seeds} if s.finetune_seeds is not None else {}),
            "finetune_steps": s.finetune_steps,
            "augment_steps": s.augment_steps,
            "generator_steps": {name: s.generator_steps for name in base.generator_steps},
            "classifier_epochs": s.classifier_epochs,
        }
    )

