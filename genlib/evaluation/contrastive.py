"""A feature space learned without labels: a small CNN trained by contrastive learning (SimCLR, Chen et al.
2020) on the train split's images alone, cached on disk by data digest like the feature classifier.

Why this space (docs/metrics.md, "Feature spaces"): FID, precision and recall need an embedding in which
distances mean something about images. Where the data have no labels the supervised feature CNN cannot be
trained; Morozov et al. (2021, "On self-supervised image representations for GAN evaluation") showed that
self-supervised features rank generators at least as well as supervised ones, and Naeem et al. (2020) that
an embedding fitted to the data's own domain matters more than its size. SimCLR needs nothing but the images
and a set of augmentations that keep an image's identity (small shifts, scalings, rotations, contrast and,
for colour, hue-preserving brightness changes), and a two-block CNN trains on a few thousand 28x28 or 32x32
images in well under a minute on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from genlib.evaluation._utils import batched, cpu_generator, seeded
from genlib.evaluation.classifier import _exclusive, conv_body
from genlib.models.base import adam
from genlib.user_cache import cache_root

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
# get_feature_space trains the encoder for this many steps per "classifier epoch" of the evaluation profile.
STEPS_PER_EPOCH_SETTING = 25


class ContrastiveConfig(BaseModel):
    """Encoder (conv3x3-BN-ReLU-maxpool blocks, a ReLU feature layer), projection head and SimCLR settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_shape: tuple[int, int, int] = (1, 28, 28)
    channels: tuple[int, ...] = (16, 32)
    feature_dim: int = Field(128, gt=0)
    projection_dim: int = Field(64, gt=0)
    temperature: float = Field(0.2, gt=0)  # NT-Xent temperature: small batches and data sets want it low
    steps: int = Field(200, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0)


class ContrastiveEncoder(nn.Module):
    """Encoder of (B, C, H, W) images in [0, 1] to (B, feature_dim) features, trained without labels.

    Shares the feature-space interface of :class:`genlib.evaluation.classifier.FeatureClassifier`:
    ``embed`` returns (features, None) (no class probabilities), ``test_accuracy`` is NaN, ``real_cache``
    memoises real images' features.
    """

    labelled = False

    def __init__(self, config: ContrastiveConfig) -> None:
        super().__init__()
        self.config = config
        self.body = conv_body(config.image_shape, config.channels, config.feature_dim)
        # SimCLR's projection head: the loss is taken after it, the features before it (they transfer better).
        self.head = nn.Sequential(nn.Linear(config.feature_dim, config.feature_dim), nn.ReLU(),
                                  nn.Linear(config.feature_dim, config.projection_dim))
        self.test_accuracy = math.nan
        self.real_cache: dict[tuple[Any, ...], Any] = {}

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [0, 1] -> (B, feature_dim)."""
        return self.body((x - 0.5) / 0.5)

    @torch.no_grad()
    def embed(self, x: Tensor, *, batch_size: int = 512) -> tuple[Tensor, None]:
        """Features (N, feature_dim) of x (N, C, H, W) on CPU, and None (no class probabilities)."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = batched(lambda xb: self.features(xb.float()), x, device=device, batch_size=batch_size)
        self.train(was_training)
        return out, None


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """A random view of each image of x (B, C, H, W) in [0, 1]: affine (shift <= 12%, scale 0.8-1.15,
    rotation <= 15 degrees), contrast and brightness jitter, a random blur, and for colour images a random
    grey view."""
    b, c = x.shape[:2]
    r = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    angle = (r(b) * 2 - 1) * math.radians(15)
    scale = 0.8 + 0.35 * r(b)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(angle) / scale
    theta[:, 0, 1], theta[:, 1, 0] = -torch.sin(angle) / scale, torch.sin(angle) / scale
    theta[:, :, 2] = (r(b, 2) * 2 - 1) * 0.24  # affine_grid spans [-1, 1]: 0.24 is 12% of the side
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    contrast = (0.6 + 0.8 * r(b, 1, 1, 1)).to(x.device, x.dtype)
    bright = ((r(b, 1, 1, 1) * 2 - 1) * 0.2).to(x.device, x.dtype)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + bright
    # SimCLR's blur: a random mix with a 3x3 box blur, so mild blur is not what the space separates images by.
    mix = (r(b, 1, 1, 1) * (r(b, 1, 1, 1) < 0.5)).to(x.device, x.dtype)
    out = (1 - mix) * out + mix * F.avg_pool2d(out, 3, 1, 1, count_include_pad=False)
    if c == 3:  # colour: a fifth of the views grey, so the space is not colour alone
        grey = out.mean(1, keepdim=True).expand_as(out)
        pick = (r(b) < 0.2).to(x.device)[:, None, None, None]
        out = torch.where(pick, grey, out)
    return out.clamp(0, 1)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's loss for two views (B, D) of the same B images: each view must pick its partner among 2B-1."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = z1.shape[0]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


@torch.enable_grad()
def train_contrastive(x: Tensor, config: ContrastiveConfig, *, seed: int, device: torch.device) -> ContrastiveEncoder:
    """SimCLR on images x (N, C, H, W) in [0, 1] for ``config.steps`` Adam steps (cosine decay); labels unused."""
    gen = cpu_generator(seed)
    with seeded(seed, device):
        net = ContrastiveEncoder(config).to(device)
    params = list(net.parameters())
    opt = adam(params, lr=config.lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.steps) /
                                                                                 config.steps)))
    n = x.shape[0]
    batch = min(config.batch_size, n)
    net.train()
    for _ in range(config.steps):
        idx = torch.randperm(n, generator=gen)[:batch]
        xb = x[idx].float().to(device)
        v1, v2 = augment(xb, gen), augment(xb, gen)
        loss = nt_xent(net.head(net.features(v1)), net.head(net.features(v2)), config.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def _cache_path(data: Any, config: ContrastiveConfig, seed: int, cache_dir: str | Path | None) -> Path:
    key = json.dumps({"format": CACHE_FORMAT, "digest": data.digest, "config": config.model_dump(mode="json"),
                      "seed": seed}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    label = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(getattr(data, "name", "data")))[:40]
    return root / "contrastive_encoder" / f"{label}-{digest}.pt"


def get_contrastive_encoder(data: Any, *, device: torch.device | str, cache_dir: str | Path | None = None,
                            config: ContrastiveConfig | None = None, seed: int = 0) -> ContrastiveEncoder:
    """The contrastive encoder of ``data`` (x_train (N, C, H, W) in [0, 1]; labels never read), trained on its
    train split or loaded from ``cache_dir`` / ``$GENLIB_CACHE_DIR`` / ``~/.cache/genlib`` under
    ``contrastive_encoder/`` (keyed by data digest, config and seed; read back with ``weights_only=True``)."""
    from genlib.training import resolve_device
    from genlib.training.checkpoint import atomic_torch_save

    device = resolve_device(device)
    config = config or ContrastiveConfig(image_shape=tuple(data.x_train.shape[1:]))
    path = _cache_path(data, config, seed, cache_dir)
    with _exclusive(path):
        if path.is_file():
            try:
                blob = torch.load(path, map_location="cpu", weights_only=True)
                net = ContrastiveEncoder(ContrastiveConfig(**blob["config"]))
                if net.config == config:
                    net.load_state_dict(blob["state_dict"])
                    logger.info("contrastive encoder loaded from %s", path)
                    return net.to(device).eval()
            except Exception as err:  # a corrupt or stale file is rebuilt, not fatal
                logger.warning("ignoring unreadable contrastive-encoder cache %s (%s)", path, type(err).__name__)
        t0 = time.perf_counter()
        net = train_contrastive(data.x_train, config, seed=seed, device=device)
        logger.info("contrastive encoder trained on %d images in %.1fs", data.x_train.shape[0],
                    time.perf_counter() - t0)
        blob = {"format": CACHE_FORMAT, "config": config.model_dump(mode="json"), "digest": str(data.digest),
                "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}
        try:
            atomic_torch_save(blob, path)
        except OSError as err:  # a read-only cache is not a reason to fail the evaluation
            logger.warning("could not cache the contrastive encoder at %s (%s)", path, err)
        return net
