"""A small CNN trained on the train split: its penultimate layer gives the features of FID and
precision/recall, its softmax the Inception Score and conditional class accuracy. Also the plain
supervised training loop that the fine-tuning and augmentation experiments share.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from genlib.evaluation._utils import batched, cpu_generator, seeded
from genlib.models.base import adam
from genlib.models.layers import check_conv_shape
from genlib.user_cache import cache_root

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
DEFAULT_CLASSIFIER_EPOCHS = 10


class ClassifierConfig(BaseModel):
    """Architecture of the feature CNN: conv3x3-BN-ReLU-maxpool blocks, a feature layer, a linear head."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = Field(10, gt=1)
    channels: tuple[int, ...] = (16, 32)
    feature_dim: int = Field(128, gt=0)
    dropout: float = Field(0.25, ge=0, lt=1)


def conv_body(image_shape: tuple[int, int, int], channels: tuple[int, ...], feature_dim: int) -> nn.Sequential:
    """conv3x3-BN-ReLU-maxpool blocks, flattened, then a ReLU feature layer: (B, C, H, W) -> (B, feature_dim).
    The body of both feature spaces (this classifier and genlib.evaluation.contrastive's encoder)."""
    h, w = check_conv_shape(image_shape, len(channels))
    layers: list[nn.Module] = []
    c_in = image_shape[0]
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * h * w, feature_dim), nn.ReLU())


class FeatureClassifier(nn.Module):
    """CNN classifier of (B, C, H, W) images in [0, 1]; ``features`` is its penultimate layer (B, feature_dim).

    ``test_accuracy`` is its accuracy on the test split of the data it was trained on (NaN if unknown).
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.body = conv_body(config.image_shape, config.channels, config.feature_dim)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.feature_dim, config.num_classes))
        self.test_accuracy = math.nan
        # Features of real images by (digest, split, n, seed): shared by every model's evaluation.
        self.real_cache: dict[tuple[Any, ...], Any] = {}

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [0, 1] -> (B, feature_dim)."""
        return self.body((x - 0.5) / 0.5)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [0, 1] -> logits (B, num_classes)."""
        return self.head(self.features(x))

    @torch.no_grad()
    def embed(self, x: Tensor, *, batch_size: int = 512) -> tuple[Tensor, Tensor]:
        """Features (N, feature_dim) and class probabilities (N, num_classes) of x (N, C, H, W), on CPU."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device

        def both(xb: Tensor) -> Tensor:
            feats = self.features(xb.float())
            return torch.cat([feats, self.head(feats).softmax(-1)], 1)

        out = batched(both, x, device=device, batch_size=batch_size)
        self.train(was_training)
        return out[:, : self.config.feature_dim], out[:, self.config.feature_dim :]


def mlp_classifier(image_shape: tuple[int, int, int], num_classes: int, hidden: tuple[int, ...] = (256, 128)) -> nn.Module:
    """A dense classifier (B, C, H, W) -> logits (B, num_classes) with ReLU hidden layers."""
    dims = [math.prod(image_shape), *hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(dims[-1], num_classes))
    return nn.Sequential(*layers)


def random_shift(x: Tensor, max_fraction: float, generator: torch.Generator) -> Tensor:
    """Translate each image of x (B, C, H, W) by its own random offset of at most max_fraction of its size."""
    b = x.shape[0]
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * 2 * max_fraction  # affine_grid spans [-1, 1]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


@torch.enable_grad()  # callers may hold no_grad (evaluate_model does); training needs gradients regardless
def train_classifier(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    transform: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    weight_decay: float = 0.0,
    params: list[nn.Parameter] | None = None,
) -> nn.Module:
    """Train ``net`` (already on ``device``) by cross-entropy for ``steps`` Adam steps over shuffled epochs.

    Args:
        x: (N, C, H, W) or (N, D) inputs; y: (N,) labels. Moved to ``device`` once.
        transform: optional batch augmentation (batch, CPU generator) -> batch.
        params: parameters to optimise (default: all that require grad).
    Returns:
        net, in eval mode. The learning rate follows a cosine decay to zero.
    """
    gen = cpu_generator(seed)
    x, y = x.to(device), y.to(device)
    n = x.shape[0]
    batch_size = min(batch_size, n)
    params = params if params is not None else [p for p in net.parameters() if p.requires_grad]
    opt = adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    net.train()
    order, pos = torch.randperm(n, generator=gen).to(device), 0
    with seeded(seed, device):  # dropout draws from the global RNG
        for _ in range(steps):
            if pos + batch_size > n:
                order, pos = torch.randperm(n, generator=gen).to(device), 0
            idx = order[pos : pos + batch_size]
            pos += batch_size
            xb = x[idx]
            if transform is not None:
                xb = transform(xb, gen)
            loss = F.cross_entropy(net(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor, *, device: torch.device, batch_size: int = 1024) -> float:
    """Fraction of x (N, ...) whose arg-max prediction equals y (N,)."""
    net.eval()
    pred = batched(lambda xb: net(xb).argmax(-1).float(), x, device=device, batch_size=batch_size)
    return float((pred.long() == y.cpu()).float().mean())


def _cache_path(data: Any, config: ClassifierConfig, epochs: int, seed: int, cache_dir: str | Path | None) -> Path:
    key = json.dumps(
        {"format": CACHE_FORMAT, "digest": data.digest, "config": config.model_dump(mode="json"), "epochs": epochs,
         "seed": seed},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    label = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(getattr(data, "name", "data")))[:40]
    return root / "feature_classifier" / f"{label}-{digest}.pt"


def _load_cached(path: Path, config: ClassifierConfig) -> FeatureClassifier | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        net = FeatureClassifier(ClassifierConfig(**blob["config"]))
        if net.config != config:
            return None
        net.load_state_dict(blob["state_dict"])
        net.test_accuracy = float(blob["test_accuracy"])
        return net
    except Exception as err:  # a corrupt or stale file is rebuilt, not fatal
        logger.warning("ignoring unreadable feature-classifier cache %s (%s)", path, type(err).__name__)
        return None


def get_feature_classifier(
    data: Any,
    *,
    device: torch.device | str,
    epochs: int | None = None,
    cache_dir: str | Path | None = None,
    config: ClassifierConfig | None = None,
    seed: int = 0,
    batch_size: int = 128,
) -> FeatureClassifier:
    """The feature CNN for ``data``, trained on its train split or loaded from the on-disk cache.

    The cache file (``torch.save`` of config + state_dict + test accuracy, read back with
    ``weights_only=True``) is keyed by ``data.digest``, the config, epochs and seed; it lives in
    ``cache_dir`` or ``$GENLIB_CACHE_DIR`` or ``~/.cache/genlib``, under ``feature_classifier/``.

    Args:
        data: a DataSplits (x_* (N, C, H, W) in [0, 1], y_* (N,), num_classes, digest, name).
        epochs: passes over the train split (default 10).
    Returns:
        The classifier on ``device`` in eval mode, with ``test_accuracy`` set.
    """
    from genlib.training import resolve_device

    device = resolve_device(device)
    epochs = int(epochs or DEFAULT_CLASSIFIER_EPOCHS)
    config = config or ClassifierConfig(image_shape=tuple(data.x_train.shape[1:]), num_classes=max(int(data.num_classes), 2))
    path = _cache_path(data, config, epochs, seed, cache_dir)
    # Evaluations in parallel worker processes need the same classifier: one trains it, the others wait
    # for its file instead of training it again.
    with _exclusive(path):
        net = _load_cached(path, config)
        if net is not None:
            logger.info("feature classifier loaded from %s (test accuracy %.4f)", path, net.test_accuracy)
            return net.to(device).eval()
        return _train_and_cache(data, config, epochs, seed, batch_size, path, device)


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An advisory lock on ``path`` + ``.lock`` across processes of this machine (none where the cache
    folder cannot be written or the platform has no ``fcntl``: then each process trains its own)."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_suffix(".lock"), "a")
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _train_and_cache(data: Any, config: ClassifierConfig, epochs: int, seed: int, batch_size: int, path: Path,
                     device: torch.device) -> FeatureClassifier:
    """Train the feature CNN on ``data``'s train split and write it to ``path``."""
    from genlib.training.checkpoint import atomic_torch_save

    t0 = time.perf_counter()
    with seeded(seed, device):
        net = FeatureClassifier(config)
    net.to(device)
    steps = epochs * math.ceil(len(data.y_train) / batch_size)
    # Shifts of up to 2 pixels in 28: cheap augmentation that the MNIST >= 99% target needs.
    train_classifier(
        net, data.x_train, data.y_train, steps=steps, batch_size=batch_size, lr=2e-3, seed=seed, device=device,
        transform=lambda xb, g: random_shift(xb, 2 / 28, g), weight_decay=1e-4,
    )
    net.test_accuracy = accuracy(net, data.x_test, data.y_test, device=device)
    logger.info(
        "feature classifier trained on %d images for %d epochs in %.1fs: test accuracy %.4f",
        len(data.y_train), epochs, time.perf_counter() - t0, net.test_accuracy,
    )
    blob = {
        "format": CACHE_FORMAT,
        "config": config.model_dump(mode="json"),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "test_accuracy": net.test_accuracy,
        "digest": str(data.digest),
        "epochs": epochs,
    }
    try:
        atomic_torch_save(blob, path)
    except OSError as err:  # a read-only cache is not a reason to fail the evaluation
        logger.warning("could not cache the feature classifier at %s (%s)", path, err)
    return net.eval()
