"""``MLflowCallback``: training side effects into one MLflow run (params, per-epoch metrics, grids, curves)."""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from genlib.training.loop import Callback, FitResult, TrainConfig

logger = logging.getLogger(__name__)

# Folders sort in MLflow's artifact tree: "plots" (the loss curves) before "snapshots" (the image grids).
SNAPSHOTS_DIR = "snapshots"
# MLflow keeps param values up to 6000 characters; longer ones are cut with a marker.
_PARAM_LIMIT = 6000


def flatten_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"model.latent_dim": "16", "train.epochs": "40", ...}``: nested dicts joined with dots, values as text."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, f"{name}."))
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
            out[name] = text if len(text) <= _PARAM_LIMIT else text[: _PARAM_LIMIT - 3] + "..."
    return out


class MLflowCallback(Callback):
    """Logs a fit into the MLflow run ``run_id``.

    At the start: the model config (``model.*``) and train config (``train.*``) as params. After each
    epoch: every metric of the fit history (each loss term, train and val) at step = epoch, in one
    batched call. At the end: ``plots/loss_curves.png`` (the first artifact in MLflow's tree),
    ``snapshots/reconstructions.png``, ``snapshots/samples.png`` (as the model can), and
    ``snapshots/epoch_NNN_*.png`` every ``image_every`` epochs,
    uploaded together.

    Args:
        run_id: the run to log into (explicit, so it works from any thread).
        images: (N, C, H, W) held-out images in [0, 1] for reconstruction grids (the first 16 are used).
        labels: (N,) their labels (conditional models reconstruct with them).
        seed: seed of the sample grids, so grids of different epochs show the same latent draws.
        image_every: also write grids every that many epochs (None: only at the end).
    """

    def __init__(self, run_id: str, images: Tensor | None = None, labels: Tensor | None = None, *, seed: int = 0,
                 image_every: int | None = None) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient()
        self.run_id = run_id
        self.images = images[:16] if images is not None else None
        self.labels = labels[:16] if labels is not None else None
        self.seed = seed
        self.image_every = image_every
        self.history: list[dict[str, float]] = []
        self._staging = Path(tempfile.mkdtemp(prefix="genlib-mlflow-"))
        self.epoch_seconds = 0.0  # spent in on_epoch_end (inside the fit's timer)
        # (run id, history) of the enclosing runs while a training stage logs into a child run.
        self._stages: list[tuple[str, list[dict[str, float]]]] = []
        self.seconds = 0.0  # spent in every hook: the tracking overhead of this fit

    def on_fit_begin(self, model: Any, train_config: TrainConfig) -> None:
        t0 = time.perf_counter()
        params = flatten_params({"model": model.config.model_dump(mode="json"),
                                 "train": train_config.model_dump(mode="json")})
        params["model.parameters"] = str(sum(p.numel() for p in model.parameters()))
        self._log_params(params)
        self.seconds += time.perf_counter() - t0

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], model: Any) -> None:
        from mlflow.entities import Metric

        t0 = time.perf_counter()
        now = int(time.time() * 1000)
        values = {k: float(v) for k, v in metrics.items() if k != "epoch"}
        self.history.append({**values, "epoch": epoch})
        # Non-finite values are logged too (MLflow stores NaN): they show where a run diverged.
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, epoch) for k, v in values.items()],
                              synchronous=True)
        if self.image_every and epoch % self.image_every == 0 and not self._stages:
            self._write_grids(model, prefix=f"epoch_{epoch:03d}_")
        spent = time.perf_counter() - t0
        self.epoch_seconds += spent
        self.seconds += spent

    def on_fit_end(self, result: FitResult) -> None:
        t0 = time.perf_counter()
        if not self._stages:  # a stage's model (an RBM of a pre-training stack) is not the image model
            self._write_grids(result.model, prefix="")
        # The fit's history covers the epochs before a resume too (this callback saw only the later ones).
        history = result.history or self.history
        if history:
            write_loss_curves(history, self._staging / "plots" / "loss_curves.png")
        self.flush()
        self.seconds += time.perf_counter() - t0

    def on_stage_begin(self, name: str) -> None:
        """Open a child run ``<parent run name>/<name>`` (tag ``genlib.stage``); the stage's fit logs there.
        It is a ``train`` run with the standard tags (host and PID: the stale-run clean-up sees it too)."""
        from genlib.tracking import tags as T
        from genlib.tracking.runs import standard_tags

        t0 = time.perf_counter()
        parent = self.client.get_run(self.run_id)
        inherited = {k: v for k, v in parent.data.tags.items() if k in (T.DATASET, T.DATASET_DIGEST, T.DEVICE)}
        child = self.client.create_run(parent.info.experiment_id, run_name=f"{parent.info.run_name}/{name}",
                                       tags={**standard_tags("train"), **inherited, T.MLFLOW_PARENT_RUN_ID: self.run_id,
                                             T.STAGE: name})
        self._stages.append((self.run_id, self.history))
        self.run_id, self.history = child.info.run_id, []
        self.seconds += time.perf_counter() - t0

    def on_stage_end(self, name: str, result: FitResult | None) -> None:
        """Finish the stage's child run and log into the enclosing run again."""
        t0 = time.perf_counter()
        self.flush()
        self.client.set_terminated(self.run_id, "FINISHED")
        self.run_id, self.history = self._stages.pop()
        self.seconds += time.perf_counter() - t0

    def close(self) -> None:
        """Drop anything staged but not uploaded (after a failed fit)."""
        import shutil

        shutil.rmtree(self._staging, ignore_errors=True)

    def flush(self) -> None:
        """Upload what was written so far (one call) and clear the staging folder."""
        import shutil

        if self._staging.exists() and any(self._staging.iterdir()):
            self.client.log_artifacts(self.run_id, str(self._staging))
        shutil.rmtree(self._staging, ignore_errors=True)

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100], synchronous=True)

    def _write_grids(self, model: Any, prefix: str) -> None:
        from genlib.images import save_model_figures

        save_model_figures(model, self._staging / SNAPSHOTS_DIR, self.images, self.labels, seed=self.seed,
                           prefix=prefix)


def write_loss_curves(history: list[dict[str, float]], path: Path) -> Path:
    """One panel per loss term: train and val curves against the epoch. Returns the PNG path."""
    from matplotlib.figure import Figure

    terms = sorted({k.split("_", 1)[1] for row in history for k in row if k.startswith(("train_", "val_"))})
    cols = min(3, len(terms)) or 1
    rows = math.ceil(len(terms) / cols) or 1
    # Margins set by hand: the constrained layout solver costs about as much as drawing the figure.
    fig = Figure(figsize=(4 * cols, 3 * rows))
    fig.subplots_adjust(left=0.3 / cols, right=1 - 0.05 / cols, bottom=0.5 / (3 * rows), top=1 - 0.3 / (3 * rows),
                        wspace=0.3, hspace=0.55)
    epochs = [row["epoch"] for row in history]
    for i, term in enumerate(terms):
        ax = fig.add_subplot(rows, cols, i + 1)
        for split in ("train", "val"):
            key = f"{split}_{term}"
            if any(key in row for row in history):
                ax.plot(epochs, [row.get(key, math.nan) for row in history], label=split)
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
