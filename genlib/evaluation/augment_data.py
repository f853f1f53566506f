"""What the augmentation experiment adds to a small labelled subset: pseudo-labels of the unlabelled
training images from a teacher classifier, conditional generators trained on labelled (and
pseudo-labelled) images, and their samples filtered by the teacher (a semi-supervised route in the
spirit of Kingma et al. 2014's M2 and of pseudo-label self-training, Lee 2013)."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor, nn

from genlib.errors import ConfigError
from genlib.evaluation._utils import batched, cpu_generator, seeded, with_train
from genlib.evaluation.classifier import ClassifierConfig, FeatureClassifier, mlp_classifier
from genlib.evaluation.generative import draw_samples
from genlib.evaluation.profiles import EvalProfile

logger = logging.getLogger(__name__)

VAL_IMAGES_FOR_GENERATORS = 256  # validation loss is only logged (no early stopping): a slice suffices
# A tiny labelled subset is repeated to make epochs of at least this many images: the same passes over
# the same images, but far fewer per-epoch validation rounds and log lines.
MIN_EPOCH_IMAGES = 2048
MAX_DRAW_ROUNDS = 8  # filtered sampling gives up after this many times n_synthetic draws
AFFINE_GROUP = 8  # images sharing one random affine


def classic_augmentation() -> Any:
    """RandomAffine (+-10 degrees, 10% shifts, 0.9-1.1 scale) from torchvision.transforms.v2 on batch tensors.

    v2 draws one affine per tensor it is given, so the batch (B, C, H, W) goes through in groups of
    AFFINE_GROUP images: more variety than one affine per batch, still cheap tensor ops. The
    parameters come from torch's global RNG (seeded by the training loop).
    """
    from torchvision.transforms import v2

    affine = v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))

    def apply(xb: Tensor) -> Tensor:
        return torch.cat([affine(chunk) for chunk in torch.split(xb, AFFINE_GROUP)])

    return apply


def make_classifier(kind: str, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The augmentation experiment's classifier: an MLP (784-256-128-C) or the feature CNN's architecture."""
    if kind == "cnn":
        return FeatureClassifier(ClassifierConfig(image_shape=image_shape, num_classes=num_classes))
    return mlp_classifier(image_shape, num_classes)


def check_generators(names: tuple[str, ...]) -> None:
    """Every name must be a registered model that samples images of a requested class."""
    from genlib.models import get_model_class

    for name in names:
        cls = get_model_class(name)
        if not (cls.generates and cls.conditional):
            raise ConfigError(f"augment_generators: {name} does not sample images of a requested class")


@torch.no_grad()
def pseudo_label(teacher: nn.Module, x: Tensor, *, confidence: float, per_class: int, num_classes: int,
                 device: torch.device, batch_size: int) -> tuple[Tensor, Tensor]:
    """Class-balanced pseudo-labels: per class, the (at most ``per_class``) images of x (N, C, H, W) the
    teacher assigns to it most confidently, with probability >= ``confidence``.

    Balance matters: the confident predictions of a weak teacher crowd into the easy classes (ones and
    zeros), and a student trained on them unbalanced does worse than on the labels alone.
    Returns (x_kept (M, C, H, W), labels (M,)) on x's device.
    """
    teacher.eval()
    probs = batched(lambda xb: teacher(xb).softmax(-1), x, device=device, batch_size=batch_size)
    conf, labels = probs.max(1)
    keep: list[Tensor] = []
    for c in range(num_classes):
        idx = torch.nonzero((labels == c) & (conf >= confidence)).flatten()
        keep.append(idx[conf[idx].argsort(descending=True)[:per_class]])
    kept = torch.cat(keep).sort().values.to(x.device)
    return x[kept], labels.to(x.device)[kept]


def train_generator(name: str, data: Any, x: Tensor, y: Tensor, profile: EvalProfile, *, device: torch.device,
                    seed: int) -> Any:
    """Train conditional generator ``name`` on the labelled images x (N, C, H, W), y (N,).

    Runs ``profile.generator_steps[name]`` optimisation steps (rounded up to whole epochs).
    """
    from genlib.models import get_model
    from genlib.training import TrainConfig, config_for_data, fit

    steps = profile.generator_steps.get(name, 500)
    bs = min(64, x.shape[0])
    reps = max(1, min(MIN_EPOCH_IMAGES, steps * bs) // x.shape[0])
    x, y = x.repeat(reps, 1, 1, 1), y.repeat(reps)
    if x.shape[0] % bs == 1:  # a last batch of one image breaks BatchNorm in training mode
        x, y = torch.cat([x, x[:1]]), torch.cat([y, y[:1]])
    epochs = max(1, math.ceil(steps / math.ceil(x.shape[0] / bs)))
    sub = with_train(data, x, y, data.x_val[:VAL_IMAGES_FOR_GENERATORS], data.y_val[:VAL_IMAGES_FOR_GENERATORS])
    config = config_for_data(name, sub, profile.generator_overrides.get(name, {}))
    with seeded(seed, device):
        model = get_model(name, config)
    fit(model, sub, TrainConfig(epochs=epochs, batch_size=bs, seed=seed), device=device, progress=False)
    return model.eval()


def train_generator_or_none(name: str, *args: Any, **kwargs: Any) -> Any | None:
    from genlib.errors import TrainingDivergedError

    try:
        return train_generator(name, *args, **kwargs)
    except TrainingDivergedError as err:
        # One diverged generator should not sink the whole experiment: its rows stay empty (NaN).
        logger.warning("augmentation: %s diverged (%s); its condition is left out", name, err)
        return None


@torch.no_grad()
def synthetic_set(generator: Any, n: int, *, seed: int, batch_size: int, teacher: nn.Module | None = None,
                  confidence: float = 0.0, device: torch.device) -> tuple[Tensor, Tensor]:
    """n labelled samples (balanced over classes) of a conditional generator, on CPU.

    With a ``teacher``, only samples it assigns to their requested class with probability >=
    ``confidence`` are kept (drawing up to MAX_DRAW_ROUNDS x n); fewer than n may come back.
    Returns (x (M, C, H, W), y (M,)).
    """
    if teacher is None:
        return draw_samples(generator, n, seed=seed, batch_size=batch_size)  # type: ignore[return-value]
    xs, ys, have = [], [], 0
    for round_ in range(MAX_DRAW_ROUNDS):
        x, y = draw_samples(generator, n, seed=seed * 1000 + round_, batch_size=batch_size)
        probs = batched(lambda xb: teacher(xb).softmax(-1), x, device=device, batch_size=batch_size)
        conf, pred = probs.max(1)
        keep = (pred == y) & (conf >= confidence)
        xs.append(x[keep])
        ys.append(y[keep])
        have += int(keep.sum())
        if have >= n:
            break
    x, y = torch.cat(xs)[:n], torch.cat(ys)[:n]
    if have < n:
        logger.info("augmentation: the teacher recognised only %d of %d wanted samples", have, n)
    order = torch.randperm(x.shape[0], generator=cpu_generator(seed))
    return x[order], y[order]
