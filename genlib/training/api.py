"""High-level training entry: a typed model config + data + TrainConfig -> a fitted model.

The CLI, the flows and the benchmarks get the config from :func:`genlib.spec.resolve_spec`
(``train_model(spec.model, data, spec.train)``); test metrics are genlib.evaluation's job.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genlib.data.splits import has_labels
from genlib.errors import ConfigError
from genlib.models import GenerativeModel, ModelConfig, get_model, get_model_class, make_config
from genlib.training.config import as_device
from genlib.training.loop import Callback, FitResult, TrainConfig, fit, require_examples
from genlib.training.pretrain import pretrain_autoencoder

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainedModel:
    """A fitted model with its fit result (history, epochs, timings)."""

    model: GenerativeModel
    fit: FitResult


def config_for_data(name: str, data: Any, values: Mapping[str, Any] | None = None) -> ModelConfig:
    """Config of model ``name`` from ``values`` with the data's image shape and class count (for the
    helper models evaluation trains internally; user settings go through genlib.spec.resolve_spec)."""
    shape = {"image_shape": tuple(data.x_train.shape[1:]), "num_classes": max(int(data.num_classes), 2)}
    return make_config(name, {**(values or {}), **shape})


def train_model(
    config: ModelConfig,
    data: Any,
    train_config: TrainConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    progress: bool | None = None,
) -> TrainedModel:
    """Build the model of ``config`` (seeded by ``train_config.seed``) and fit it on ``data``."""
    device = as_device(device)  # resolved by the caller (an entry point); "auto" is refused
    require_examples(data, ("train", "val"))  # before training, not after it
    if tuple(config.image_shape) != tuple(data.x_train.shape[1:]):
        raise ConfigError(f"image_shape {tuple(config.image_shape)} of the {config.model_name} config does not "
                          f"match the data's {tuple(data.x_train.shape[1:])}")
    if get_model_class(config.model_name).conditional and not has_labels(data):
        raise ConfigError(f"{config.model_name} is conditional and needs class labels, but {data.name} has none; "
                          "train a model that needs no labels")
    train_config = train_config or TrainConfig()
    torch.manual_seed(train_config.seed)  # the initial weights depend on the seed too
    model = get_model(config.model_name, config)
    if resume_from is None:  # a resumed fine-tuning has its pre-trained weights in the checkpoint
        pretrain_autoencoder(model, data, device=device, callbacks=callbacks, checkpoint_dir=checkpoint_dir,
                             seed=train_config.seed, progress=progress)
    result = fit(model, data, train_config, device=device, callbacks=callbacks, checkpoint_dir=checkpoint_dir,
                 resume_from=resume_from, progress=progress)
    return TrainedModel(model=result.model, fit=result)
