"""What training is told and what it returns: TrainConfig, the Callback hooks, FitResult, the device."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from genlib.errors import ConfigError

if TYPE_CHECKING:
    from genlib.models import GenerativeModel


class TrainConfig(BaseModel):
    """How to train (not what): epochs, batch size, seed, early stopping and checkpointing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    seed: int = 0
    patience: int | None = Field(None, ge=1)  # early stopping on validation loss; None = off
    min_delta: float = Field(0.0, ge=0)
    checkpoint_every: int | None = Field(None, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    # "cosine": each optimizer's learning rate follows half a cosine from its configured value at
    # epoch 1 towards 0 at epoch ``epochs`` (set from the epoch number, so a resumed run is exact).
    lr_schedule: Literal["constant", "cosine"] = "constant"


class Callback:
    """Hooks for side effects (tracking, logging). All methods are optional no-ops."""

    def on_fit_begin(self, model: GenerativeModel, train_config: TrainConfig) -> None: ...

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], model: GenerativeModel) -> None: ...

    def on_fit_end(self, result: FitResult) -> None: ...

    # A multi-stage training (e.g. greedy RBM pre-training, genlib.training.pretrain) wraps each
    # stage's own fit() in these, so trackers can log every stage as a run of its own.
    def on_stage_begin(self, name: str) -> None: ...

    def on_stage_end(self, name: str, result: FitResult | None) -> None: ...


@dataclasses.dataclass
class FitResult:
    """What ``fit`` returns: the trained model (best weights when early stopping) and its history."""

    model: GenerativeModel
    history: list[dict[str, float]]
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    seconds: float
    device: str


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The device ``device`` names. "auto" has one meaning everywhere: ``$GENLIB_DEVICE`` when set (work
    pools set it), else CUDA when torch sees one, else the CPU. Called at an entry point (the CLI
    commands, genlib.plan.resolve_plan, a flow run's start); what it calls takes the torch.device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        from_env = os.environ.get("GENLIB_DEVICE", "").strip()
        if from_env and from_env != "auto":
            try:
                return as_device(from_env)
            except ConfigError as err:
                raise ConfigError(f"{err} ($GENLIB_DEVICE={from_env})") from None
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return as_device(device)


def as_device(device: str | torch.device) -> torch.device:
    """A device already decided, as a torch.device: a name such as "cpu" or "cuda:1" is checked, "auto"
    refused (it is resolved at the entry point by :func:`resolve_device`, not in the training functions)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        raise ConfigError("device: auto is resolved by the caller (genlib.training.resolve_device); pass the device")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device: unknown device {device!r}; use auto, cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA device is available here")
    return resolved


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
