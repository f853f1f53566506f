"""High-level training entry used by the CLI and the flows: name + data + overrides -> trained model and metrics."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genlib.models import GenerativeModel, get_model, make_config
from genlib.training.loop import Callback, FitResult, TrainConfig, evaluate, fit, require_examples, resolve_device

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainedModel:
    """A fitted model with its fit result and test metrics (``test_loss``, ``test_mse``, ...)."""

    model: GenerativeModel
    fit: FitResult
    test_metrics: dict[str, float]


def build_config(name: str, data: Any, overrides: Mapping[str, Any] | None = None):
    """Validated config for ``name`` whose image shape and class count come from the data."""
    values = dict(overrides or {})
    values.setdefault("image_shape", tuple(data.x_train.shape[1:]))
    values.setdefault("num_classes", max(int(data.num_classes), 2))
    return make_config(name, values)


def train_model(
    name: str,
    data: Any,
    model_overrides: Mapping[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    *,
    device: str | torch.device = "auto",
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    progress: bool | None = None,
) -> TrainedModel:
    """Build model ``name`` for ``data``, fit it, and measure it on the test split."""
    device = resolve_device(device)
    require_examples(data, ("train", "val", "test"))  # before training, not after it
    config = build_config(name, data, model_overrides)
    train_config = train_config or TrainConfig()
    torch.manual_seed(train_config.seed)  # the initial weights depend on the seed too
    model = get_model(name, config)
    result = fit(
        model,
        data,
        train_config,
        device=device,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
        resume_from=resume_from,
        progress=progress,
    )
    test_metrics = evaluate(result.model, data.x_test, data.y_test, device, train_config.eval_batch_size, prefix="test")
    return TrainedModel(model=result.model, fit=result, test_metrics=test_metrics)
