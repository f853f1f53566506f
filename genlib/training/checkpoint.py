"""Checkpoints are plain dicts ``{config, state_dict, optimizer, epoch, ...}`` rebuilt through the registry."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from genlib.errors import DataError, GenlibError
from genlib.models import GenerativeModel, config_from_dict, get_model
from genlib.models.base import config_dict

FORMAT_VERSION = 1
# What ``fit(checkpoint_dir=...)`` writes every ``checkpoint_every`` epochs, and what a resume reads.
LAST_CHECKPOINT = "last.pt"
# Which training a resume folder belongs to (see claim_resume_folder).
KEY_FILE = "key.json"


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (on CPU) plus what is needed to resume training."""

    model: GenerativeModel
    epoch: int | None
    optimizer: dict[str, Any] | None
    extra: dict[str, Any]


def checkpoint_dict(
    model: GenerativeModel,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    epoch: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint as a dict of plain types and tensors, loadable with ``weights_only=True``."""
    return {
        "format_version": FORMAT_VERSION,
        "config": config_dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": {k: opt.state_dict() for k, opt in optimizers.items()} if optimizers else None,
        "epoch": epoch,
        "extra": extra or {},
    }


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """Write via a temporary file and rename, so a crash never leaves a half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(
    path: str | Path,
    model: GenerativeModel,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    epoch: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    return atomic_torch_save(checkpoint_dict(model, optimizers, epoch, extra), path)


def model_from_checkpoint_dict(ckpt: dict[str, Any], source: str = "checkpoint") -> GenerativeModel:
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
        raise DataError(f"{source}: not a genlib checkpoint (expected a dict with 'config' and 'state_dict')")
    config = config_from_dict(ckpt["config"])
    model = get_model(config.model_name, config)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise DataError(f"{source}: weights do not fit the {config.model_name} config ({first})") from None
    return model


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and rebuild its model on CPU."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except GenlibError:
        raise
    except Exception as err:  # torch raises many types for corrupt or non-torch files
        raise DataError(f"{path}: cannot read as a torch checkpoint ({type(err).__name__})") from None
    model = model_from_checkpoint_dict(ckpt, str(path))
    return Checkpoint(model=model, epoch=ckpt.get("epoch"), optimizer=ckpt.get("optimizer"), extra=ckpt.get("extra") or {})


def checkpoint_epoch(path: str | Path) -> int:
    """The epoch recorded in the checkpoint at ``path``; 0 when there is none or it cannot be read."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True).get("epoch") or 0)
    except Exception:  # noqa: BLE001 - missing, or not a checkpoint: nothing to resume from
        return 0


@dataclasses.dataclass(frozen=True)
class ResumeFolder:
    """A checkpoint folder claimed for one training: ``epoch`` of its last checkpoint (0: start from epoch 1),
    and ``discarded``, True when it held another training's checkpoints, now removed."""

    folder: Path
    epoch: int
    discarded: bool = False

    @property
    def checkpoint(self) -> Path:
        return self.folder / LAST_CHECKPOINT

    @property
    def resume_from(self) -> Path | None:
        """The checkpoint to pass to ``fit(resume_from=...)``, or None to start afresh."""
        return self.checkpoint if self.epoch > 0 else None


def claim_resume_folder(folder: str | Path, key: str) -> ResumeFolder:
    """The folder where the training identified by ``key`` checkpoints (``fit(checkpoint_dir=...)``).

    A folder already claimed for ``key`` is kept, so training resumes from its checkpoint; one
    claimed for another key (other settings or data) is emptied first and reported as discarded.
    """
    folder = Path(folder)
    try:
        recorded = json.loads((folder / KEY_FILE).read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded == key:
        return ResumeFolder(folder, checkpoint_epoch(folder / LAST_CHECKPOINT))
    discarded = recorded is not None
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    tmp = folder / f"{KEY_FILE}.tmp"
    tmp.write_text(json.dumps({"key": key}))
    tmp.replace(folder / KEY_FILE)  # atomic: a kill never leaves half a key
    return ResumeFolder(folder, 0, discarded)
