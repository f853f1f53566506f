"""Training: one ``fit()`` for every family, checkpoints and callbacks."""

from genlib.training.api import TrainedModel, config_for_data, train_model
from genlib.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from genlib.training.loop import (
    Callback,
    FitResult,
    TrainConfig,
    evaluate,
    fit,
    resolve_device,
    seed_everything,
)

__all__ = [
    "Callback",
    "Checkpoint",
    "FitResult",
    "TrainConfig",
    "TrainedModel",
    "config_for_data",
    "train_model",
    "evaluate",
    "fit",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
]
