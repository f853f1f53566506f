"""Greedy layer-wise RBM pre-training of a deep autoencoder (Hinton & Salakhutdinov 2006).

A stack of RBMs is trained bottom-up, each on the hidden probabilities of the one below
(binary-binary layers, then a layer with linear Gaussian hidden units for the code). The stack is
unrolled into the autoencoder: layer i's weights W_i (V, H) and hidden biases become encoder layer
i, and W_i with the visible biases becomes the mirrored decoder layer, so the untrained autoencoder
computes the stack's mean-field up-down pass. ``fit`` then fine-tunes it end to end.

Each layer is one ``fit()``, wrapped in ``Callback.on_stage_begin``/``on_stage_end`` so trackers
log every stage as its own run. With a checkpoint folder every stage checkpoints (``stage_N/last.pt``)
and saves ``stage_N/done.pt`` when it finishes, so a stopped pre-training resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genlib.models import GenerativeModel, get_model, make_config
from genlib.training.checkpoint import load_checkpoint, save_checkpoint
from genlib.training.config import as_device
from genlib.training.loop import Callback, FitResult, TrainConfig, fit

logger = logging.getLogger(__name__)

# Hinton & Salakhutdinov's settings (their mnistdeepauto.m / rbm.m / rbmhidlinear.m): learning rate
# 0.1 for binary layers and 0.001 for the linear code layer, weight cost 2e-4, momentum 0.5 for five
# epochs then 0.9, CD-1, mini-batches of 100 images, grey levels used as probabilities.
BINARY_LR = 0.1
CODE_LR = 0.001
WEIGHT_DECAY = 2e-4
BATCH_SIZE = 100


@dataclasses.dataclass
class _Codes:
    """The DataSplits-shaped input of one stage: the layer below's hidden probabilities, (N, 1, 1, D)."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    name: str


def stack_dims(config: Any) -> list[int]:
    """Layer widths of the autoencoder's encoder, e.g. [784, 1000, 500, 250, 30]."""
    return [config.input_dim, *config.hidden_dims, config.latent_dim]


def stack_configs(dims: Sequence[int], image_shape: tuple[int, int, int] = (1, 28, 28)) -> list[Any]:
    """RBM configs of the stack: binary hidden units below, linear Gaussian ones at the top (the code)."""
    configs = []
    for i, (v, h) in enumerate(zip(dims[:-1], dims[1:])):
        top = i == len(dims) - 2
        configs.append(make_config("rbm", {
            "image_shape": image_shape if i == 0 else (1, 1, v), "hidden_units": h, "cd_k": 1,
            "hidden": "gaussian" if top else "bernoulli", "lr": CODE_LR if top else BINARY_LR,
            "momentum": 0.5, "final_momentum": 0.9, "momentum_epochs": 5, "weight_decay": WEIGHT_DECAY,
            "binarize": False,
        }))
    return configs


@torch.no_grad()
def stack_encode(rbms: Sequence[Any], x: Tensor) -> Tensor:
    """Mean-field up pass: E[h | v] layer by layer. x (B, C, H, W). Returns the codes (B, top units)."""
    h = x.flatten(1).float()
    for rbm in rbms:
        h = rbm.hidden_probs(h)
    return h


@torch.no_grad()
def stack_reconstruct(rbms: Sequence[Any], x: Tensor) -> Tensor:
    """Mean-field up pass then down pass p(v | h) through the stack. x (B, C, H, W). Returns (B, C, H, W)."""
    v = stack_encode(rbms, x)
    for rbm in reversed(rbms):
        v = rbm.visible_probs(v)
    return v.view_as(x)


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def unroll(model: GenerativeModel, rbms: Sequence[Any]) -> GenerativeModel:
    """Copy the stack into the autoencoder's encoder and (transposed) decoder, in place. Returns model."""
    enc, dec = _linears(model.encoder), _linears(model.decoder)
    if len(enc) != len(rbms) or len(dec) != len(rbms):
        raise ValueError(f"the autoencoder has {len(enc)} encoder layers, the stack {len(rbms)} RBMs")
    for layer, rbm in zip(enc, rbms):
        if layer.weight.shape != rbm.weight.T.shape:
            raise ValueError(f"encoder layer {tuple(layer.weight.shape)} does not fit RBM {tuple(rbm.weight.shape)}")
        layer.weight.copy_(rbm.weight.T)
        layer.bias.copy_(rbm.hidden_bias)
    for layer, rbm in zip(dec, reversed(rbms)):
        layer.weight.copy_(rbm.weight)
        layer.bias.copy_(rbm.visible_bias)
    return model


def pretrain_stack(
    data: Any,
    dims: Sequence[int],
    *,
    epochs: int,
    device: str | torch.device = "cpu",
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> list[Any]:
    """Train the RBM stack ``dims`` greedily on ``data`` (x_* (N, C, H, W) in [0, 1]); returns the RBMs on ``device``."""
    device = as_device(device)  # resolved by the caller (an entry point); "auto" is refused
    x_train, x_val = data.x_train.flatten(1).float(), data.x_val.flatten(1).float()
    configs = stack_configs(dims, tuple(data.x_train.shape[1:]))
    rbms: list[Any] = []
    for i, config in enumerate(configs):
        name = f"rbm{i + 1}_{dims[i]}x{dims[i + 1]}"
        stage_dir = Path(checkpoint_dir) / f"stage_{i + 1}" if checkpoint_dir is not None else None
        shape = config.image_shape
        stage_data = _Codes(x_train.view(-1, *shape), data.y_train, x_val.view(-1, *shape), data.y_val, name)
        done = stage_dir / "done.pt" if stage_dir is not None else None
        if done is not None and done.is_file():
            rbm = load_checkpoint(done).model.to(device)
            logger.info("pre-training stage %s: loaded %s", name, done)
        else:
            train = TrainConfig(epochs=epochs, batch_size=BATCH_SIZE, seed=seed + i,
                                checkpoint_every=1 if stage_dir is not None else None)
            last = stage_dir / "last.pt" if stage_dir is not None else None
            resume = last if last is not None and last.is_file() else None
            torch.manual_seed(seed + i)  # the stage's initial weights
            rbm = get_model("rbm", config)
            for cb in callbacks:
                cb.on_stage_begin(name)
            result: FitResult = fit(rbm, stage_data, train, device=device, callbacks=callbacks,
                                    checkpoint_dir=stage_dir, resume_from=resume, progress=progress)
            for cb in callbacks:
                cb.on_stage_end(name, result)
            if done is not None:
                save_checkpoint(done, rbm, epoch=epochs)
            logger.info("pre-training stage %s: %d epochs in %.0fs, val recon %.3f", name, result.epochs_run,
                        result.seconds, result.history[-1]["val_recon"] if result.history else float("nan"))
        rbm.eval()
        rbms.append(rbm)
        if i < len(configs) - 1:  # the next layer's data: this layer's hidden probabilities
            x_train = _encode_all(rbm, x_train, device)
            x_val = _encode_all(rbm, x_val, device)
    return rbms


@torch.no_grad()
def _encode_all(rbm: Any, x: Tensor, device: torch.device, batch_size: int = 4096) -> Tensor:
    return torch.cat([rbm.hidden_probs(x[s : s + batch_size].to(device)).to(x.device)
                      for s in range(0, x.shape[0], batch_size)])


def pretrain_autoencoder(
    model: GenerativeModel,
    data: Any,
    *,
    device: str | torch.device = "cpu",
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> list[Any] | None:
    """Pre-train and unroll when ``model.config.pretrain`` is "rbm" (else do nothing and return None).

    ``checkpoint_dir`` (the fine-tuning's) gets the stages under ``pretrain/``. Returns the RBM stack.
    """
    if not getattr(model.config, "pretrains_with_rbms", False):
        return None
    stage_root = Path(checkpoint_dir) / "pretrain" if checkpoint_dir is not None else None
    rbms = pretrain_stack(data, stack_dims(model.config), epochs=model.config.pretrain_epochs, device=device,
                          callbacks=callbacks, checkpoint_dir=stage_root, seed=seed, progress=progress)
    unroll(model, rbms)
    return rbms
