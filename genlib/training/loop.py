"""One ``fit()`` for every family (torchvision-references style); each model supplies its own step."""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlib.errors import ConfigError, DataError, TrainingDivergedError
from genlib.models import GenerativeModel, autocast_context
from genlib.training.checkpoint import LAST_CHECKPOINT, load_checkpoint, save_checkpoint
from genlib.training.config import Callback, FitResult, TrainConfig, as_device, resolve_device, seed_everything

__all__ = ["Callback", "FitResult", "TrainConfig", "evaluate", "fit", "resolve_device", "seed_everything"]

logger = logging.getLogger(__name__)


def _epoch_seed(seed: int, epoch: int) -> int:
    # Re-seeding at every epoch makes a resumed run draw exactly the noise an uninterrupted one would.
    return (seed * 1_000_003 + epoch) % (2**63)


def fits_on_device(tensors: Sequence[Tensor], device: torch.device, fraction: float = 0.5) -> bool:
    """True when the tensors take at most ``fraction`` of the device's free memory (always on CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return sum(t.numel() * t.element_size() for t in tensors) <= fraction * free


class _Progress:
    """A one-line progress bar on stderr, silent when stderr is not a terminal."""

    def __init__(self, total: int, label: str, enabled: bool | None = None) -> None:
        self.total, self.label = total, label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def update(self, done: int) -> None:
        if self.enabled:
            width = 30
            filled = int(width * done / max(self.total, 1))
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}")
            sys.stderr.flush()

    def close(self, summary: str = "") -> None:
        if self.enabled:
            sys.stderr.write(f"\r{self.label} {summary}".ljust(60) + "\n")
            sys.stderr.flush()


def _sum_terms(acc: dict[str, Tensor], terms: dict[str, Tensor], weight: int) -> None:
    for k, v in terms.items():
        acc[k] = acc.get(k, 0) + v.float() * weight


def num_batches(n: int, batch_size: int) -> int:
    """Batches per epoch: a last batch of one example is folded into the one before.

    BatchNorm cannot normalise a single example in training mode (the GANs would crash).
    """
    count = math.ceil(n / batch_size)
    return count - 1 if count > 1 and n % batch_size == 1 else count


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """Multiplier of the configured learning rate during ``epoch`` (1-based)."""
    if cfg.lr_schedule == "constant" or cfg.epochs == 1:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / cfg.epochs))


def _set_learning_rates(optimizers: dict[str, torch.optim.Optimizer], cfg: TrainConfig, epoch: int) -> None:
    factor = lr_factor(cfg, epoch)
    for opt in optimizers.values():
        for group in opt.param_groups:
            group.setdefault("base_lr", group["lr"])
            group["lr"] = group["base_lr"] * factor


def train_one_epoch(
    model: GenerativeModel,
    x: Tensor,
    y: Tensor,
    optimizers: dict[str, torch.optim.Optimizer],
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    progress: _Progress | None = None,
) -> dict[str, float]:
    """One pass over (x, y) in shuffled batches. Returns the mean of each loss term."""
    model.train()
    n = x.shape[0]
    order = torch.randperm(n, generator=generator).to(x.device)
    autocast = autocast_context(device)
    sums: dict[str, Tensor] = {}
    n_batches = num_batches(n, batch_size)
    for b in range(n_batches):
        idx = order[b * batch_size : (b + 1) * batch_size if b < n_batches - 1 else n]
        xb = x[idx].to(device, non_blocking=True)
        yb = y[idx].to(device, non_blocking=True)
        out = model.training_step(xb, yb, optimizers, autocast)
        # Accumulate on the device: one host sync per epoch instead of one per batch.
        _sum_terms(sums, out.terms(), xb.shape[0])
        if progress is not None:
            progress.update(b + 1)
    return {k: float(v) / n for k, v in sums.items()}


@torch.no_grad()
def evaluate(
    model: GenerativeModel, x: Tensor, y: Tensor, device: torch.device, batch_size: int = 1024, prefix: str = "val",
    *, exact: bool = False,
) -> dict[str, float]:
    """Mean loss terms on (x, y), plus, during training, reconstruction errors and the family's monitors.

    Returns ``{prefix}_loss`` and ``{prefix}_<term>``; unless ``exact``, also the family's extra
    metrics and, where the model reconstructs, ``{prefix}_mse`` (per pixel) and
    ``{prefix}_sq_err_per_image`` (summed over pixels), on the [0, 1] scale, under the device's
    autocast. ``exact``: loss terms only, in float32 outside autocast, as genlib.evaluation reports
    test metrics (it computes the reconstruction errors itself, in float64).
    """
    model.eval()
    sums: dict[str, Tensor] = {}
    sq_err = torch.zeros((), device=device)
    n = x.shape[0]
    autocast = nullcontext() if exact else autocast_context(device)
    for start in range(0, n, batch_size):
        xb = x[start : start + batch_size].to(device, non_blocking=True)
        yb = y[start : start + batch_size].to(device, non_blocking=True)
        with autocast:
            out = model.evaluation_loss(xb, yb)
            _sum_terms(sums, out.terms(), xb.shape[0])
            if exact:
                continue
            _sum_terms(sums, model.extra_metrics(xb, yb), xb.shape[0])
            if model.reconstructs:
                sq_err += (model.reconstruct(xb, yb).float() - xb.float()).pow(2).sum()
    metrics = {f"{prefix}_{k}": float(v) / n for k, v in sums.items()}
    if model.reconstructs and not exact:
        pixels = x[0].numel()
        metrics[f"{prefix}_sq_err_per_image"] = float(sq_err) / n
        metrics[f"{prefix}_mse"] = float(sq_err) / (n * pixels)
    return metrics


def require_examples(data: Any, splits: Sequence[str]) -> None:
    """Raise DataError when one of ``splits`` of ``data`` (e.g. "train", "val") has no examples."""
    for which in splits:
        if getattr(data, f"x_{which}").shape[0] == 0:
            name = getattr(data, "name", "the data set")
            raise DataError(f"{name}: the {which} split is empty; training needs at least one {which} example")


def _check_finite(metrics: dict[str, float], epoch: int) -> None:
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise TrainingDivergedError(f"training diverged at epoch {epoch}: {', '.join(bad)} became {metrics[bad[0]]}")


def fit(
    model: GenerativeModel,
    data: Any,
    train_config: TrainConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    progress: bool | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` (a DataSplits: x_* (N, C, H, W) in [0, 1], y_* (N,)).

    Validation loss is computed after every epoch; with ``patience`` set, training stops when
    it has not improved for that many epochs and the best weights are restored. Every
    ``checkpoint_every`` epochs a checkpoint goes to ``checkpoint_dir/last.pt``; ``resume_from``
    continues from one. A NaN or infinite loss raises TrainingDivergedError.
    """
    cfg = train_config or TrainConfig()
    device = as_device(device)  # resolved by the caller (an entry point); "auto" is refused
    require_examples(data, ("train", "val"))
    if tuple(data.x_train.shape[1:]) != tuple(model.config.image_shape):
        raise ConfigError(
            f"image_shape: model expects {tuple(model.config.image_shape)}, data has {tuple(data.x_train.shape[1:])}"
        )
    seed_everything(cfg.seed)
    model.to(device)
    optimizers = model.configure_optimizers()
    history: list[dict[str, float]] = []
    start_epoch = 1
    best_val, best_epoch, bad_epochs = math.inf, 0, 0
    best_state: dict[str, Tensor] | None = None

    if resume_from is not None:
        ckpt = load_checkpoint(resume_from)
        if ckpt.model.config != model.config:
            raise ConfigError(f"{resume_from}: checkpoint config differs from the model being trained")
        model.load_state_dict(ckpt.model.state_dict())
        model.to(device)
        optimizers = model.configure_optimizers()
        for name, state in (ckpt.optimizer or {}).items():
            optimizers[name].load_state_dict(state)
        start_epoch = (ckpt.epoch or 0) + 1
        fit_state = ckpt.extra.get("fit_state", {})
        history = list(fit_state.get("history", []))
        best_val = fit_state.get("best_val", math.inf)
        best_epoch = fit_state.get("best_epoch", 0)
        bad_epochs = fit_state.get("bad_epochs", 0)
        best_state = ckpt.extra.get("best_state")
        logger.info("resumed from %s at epoch %d", resume_from, start_epoch)

    begin_fit = getattr(model, "begin_fit", None)  # what a model learns from the data before step one
    if begin_fit is not None and resume_from is None:  # a resumed model has it in its checkpoint
        begin_fit(data.x_train, cfg.seed)

    on_device = fits_on_device([data.x_train, data.x_val], device)
    store = device if on_device else torch.device("cpu")
    x_train, y_train = data.x_train.to(store), data.y_train.to(store)
    x_val, y_val = data.x_val.to(store), data.y_val.to(store)
    if not on_device:
        logger.info("data set does not fit on %s; batches are copied from host memory", device)

    for cb in callbacks:
        cb.on_fit_begin(model, cfg)
    t0 = time.perf_counter()
    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs + 1):
        torch.manual_seed(_epoch_seed(cfg.seed, epoch))
        _set_learning_rates(optimizers, cfg, epoch)
        begin_epoch = getattr(model, "begin_epoch", None)  # per-epoch schedules a model owns (the RBM's)
        if begin_epoch is not None:
            begin_epoch(epoch, cfg.epochs, optimizers)
        shuffle = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
        bar = _Progress(num_batches(x_train.shape[0], cfg.batch_size), f"epoch {epoch}/{cfg.epochs}", progress)
        train_terms = train_one_epoch(model, x_train, y_train, optimizers, cfg.batch_size, shuffle, device, bar)
        metrics = {f"train_{k}": v for k, v in train_terms.items()}
        metrics.update(evaluate(model, x_val, y_val, device, cfg.eval_batch_size, prefix="val"))
        metrics["epoch"] = epoch
        bar.close(f"loss {metrics['train_loss']:.4g} val {metrics['val_loss']:.4g}")
        _check_finite(metrics, epoch)
        history.append(metrics)
        logger.info("epoch %d: %s", epoch, {k: round(v, 5) for k, v in metrics.items()})

        if metrics["val_loss"] < best_val - cfg.min_delta:
            best_val, best_epoch, bad_epochs = metrics["val_loss"], epoch, 0
            if cfg.patience is not None:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        for cb in callbacks:
            cb.on_epoch_end(epoch, metrics, model)
        if checkpoint_dir is not None and cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0:
            fit_state = {"history": history, "best_val": best_val, "best_epoch": best_epoch, "bad_epochs": bad_epochs}
            extra: dict[str, Any] = {"fit_state": fit_state}
            if best_state is not None:
                extra["best_state"] = {k: v.cpu() for k, v in best_state.items()}
            save_checkpoint(Path(checkpoint_dir) / LAST_CHECKPOINT, model, optimizers, epoch, extra)
        if cfg.patience is not None and bad_epochs >= cfg.patience:
            logger.info("early stopping at epoch %d (best epoch %d)", epoch, best_epoch)
            stopped_early = True
            break

    if best_state is not None and best_epoch and best_epoch != epoch:
        model.load_state_dict(copy.deepcopy(best_state))
    result = FitResult(
        model=model,
        history=history,
        epochs_run=len(history),
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - t0,
        device=str(device),
    )
    for cb in callbacks:
        cb.on_fit_end(result)
    return result
