"""What a trial's training is told about its trial, in its parameters (:class:`TrialRef`), and the pruner's
settings: plain pydantic, importable without optuna or torch (flows.params holds a TrialRef)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# The trial's user attribute that says at which epoch its training was pruned (the sweep reads it back).
PRUNED_AT = "pruned_at_epoch"


class PrunerSettings(BaseModel):
    """Optuna's MedianPruner: prune a trial whose metric at an epoch is worse than the median of the earlier
    trials' at that epoch, once ``n_startup_trials`` trials finished and after ``n_warmup_steps`` epochs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Optuna's default startup; a warm-up of several epochs because the first epochs rank learning rates rather
    # than final quality (with 2, most vae trials of the MNIST benchmark were cut at epoch 2 and the preset won).
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(5, ge=0)


class TrialRef(BaseModel):
    """Which trial a training belongs to: the study (by name, in ``storage``), the trial, and what to report."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    study: str = Field(min_length=1)
    number: int = Field(ge=0)
    trial_id: int = Field(ge=0, description="the trial's id in the storage")
    storage: str | None = Field(None, description="Optuna storage URL; None: the worker's own "
                                "(genlib.sweep.study.resolve_storage, e.g. from $GENLIB_OPTUNA_STORAGE)")
    prune_on: str | None = Field(None, description="per-epoch validation metric reported to the study")
    pruner: PrunerSettings = PrunerSettings()
