"""Where an interrupted training resumes from: a local folder per (run spec, data digest) with the fit's last
checkpoint and the MLflow run it was logging into.

The folder is ``$GENLIB_CACHE_DIR/checkpoints/<family>-<key>`` (default ``~/.cache/genlib/checkpoints/...``),
``key`` being ``RunSpec.cache_key(digest)``: the same spec on the same data finds it again, any other
spec or data does not. It holds ``last.pt`` (written by ``fit`` every ``checkpoint_every`` epochs: weights,
optimizer states, epoch, history) and ``run.json`` (the MLflow run id and the store it lives in). It is
removed once the model is logged, so a finished training leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from genlib.training.checkpoint import LAST_CHECKPOINT as CHECKPOINT
from genlib.training.checkpoint import checkpoint_epoch
RUN_FILE = "run.json"


def checkpoints_root() -> Path:
    """``$GENLIB_CACHE_DIR/checkpoints``, else ``~/.cache/genlib/checkpoints``."""
    env = os.environ.get("GENLIB_CACHE_DIR")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "genlib") / "checkpoints"


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """The resume folder of one (spec, data) and what it holds: ``run_id`` of the interrupted run (None when
    none was recorded for this store), ``epoch`` of its last checkpoint (0 when there is none)."""

    folder: Path
    run_id: str | None
    epoch: int

    @property
    def checkpoint(self) -> Path:
        return self.folder / CHECKPOINT

    @property
    def resumable(self) -> bool:
        return self.run_id is not None and self.epoch > 0


def resume_point(family: str, key: str, store: str) -> ResumePoint:
    """What is left of an earlier training of (``family``, ``key``) against tracking store ``store``.

    A checkpoint whose run belongs to another store (or an unreadable one) is not resumed: training
    starts again and overwrites it.
    """
    folder = checkpoints_root() / f"{family}-{key}"
    run_id = None
    try:
        recorded = json.loads((folder / RUN_FILE).read_text())
        if recorded.get("store") == store:
            run_id = recorded.get("run_id")
    except (OSError, ValueError):
        pass
    epoch = 0
    if run_id is not None and (folder / CHECKPOINT).is_file():
        epoch = checkpoint_epoch(folder / CHECKPOINT)
    return ResumePoint(folder, run_id, epoch)


def record_run(point: ResumePoint, run_id: str, store: str) -> None:
    """Remember that training into ``run_id`` (in ``store``) writes its checkpoints to ``point.folder``."""
    point.folder.mkdir(parents=True, exist_ok=True)
    tmp = point.folder / f"{RUN_FILE}.tmp"
    tmp.write_text(json.dumps({"run_id": run_id, "store": store}))
    tmp.replace(point.folder / RUN_FILE)  # atomic: a kill never leaves half a file


def clear(point: ResumePoint) -> None:
    """Remove the folder once the trained model is logged."""
    shutil.rmtree(point.folder, ignore_errors=True)
