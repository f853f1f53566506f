"""One trial as its training sees it: :class:`PruningCallback` reports each epoch's validation metric to the
study named by its :class:`~genlib.sweep.refs.TrialRef` and stops a pruned training (TrialPrunedError).

The callback runs wherever the training runs (a local pool worker or a ``train`` deployment run on any host)
and talks to the study's shared storage itself; optuna is imported when it starts, not here.
"""

from __future__ import annotations

from typing import Any

from genlib.errors import GenlibError
from genlib.sweep.refs import PRUNED_AT, TrialRef
from genlib.training.config import Callback, TrainConfig

__all__ = ["PRUNED_AT", "PruningCallback", "TrialPrunedError", "TrialRef"]

class TrialPrunedError(GenlibError):
    """The study pruned this trial at ``epoch`` (not a failure: the sweep records it pruned). Its MLflow run
    ends KILLED (``run_status``), and Prefect does not retry it (a genlib error)."""

    run_status = "KILLED"

    def __init__(self, message: str, epoch: int = 0) -> None:
        super().__init__(message, epoch)  # both in args, so the error pickles across processes
        self.message, self.epoch = message, epoch

    def __str__(self) -> str:
        return self.message


class PruningCallback(Callback):
    """After each epoch, report ``ref.prune_on`` to trial ``ref`` and stop the fit when the study prunes it.

    Epochs of a training stage (greedy pre-training) are not reported: the steps are the main fit's epochs.
    """

    def __init__(self, ref: TrialRef) -> None:
        self.ref = ref
        self.trial: Any = None
        self._stages = 0
        self._epochs = 0

    def on_fit_begin(self, model: Any, train_config: TrainConfig) -> None:
        if not self._stages:
            self._epochs = train_config.epochs
        if self.trial is None and not self._stages:
            from genlib.sweep.study import load_trial

            self.trial = load_trial(self.ref)

    def on_stage_begin(self, name: str) -> None:
        self._stages += 1

    def on_stage_end(self, name: str, result: Any) -> None:
        self._stages -= 1

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], model: Any) -> None:
        if self._stages or self.ref.prune_on is None:
            return
        if self.trial is None:
            from genlib.sweep.study import load_trial

            self.trial = load_trial(self.ref)
        key = self.ref.prune_on
        if key not in metrics:
            from genlib.errors import ConfigError

            known = ", ".join(sorted(k for k in metrics if k.startswith("val_")))
            raise ConfigError(f"metric {key}: the training reports no such metric; per-epoch metrics: {known}")
        self.trial.report(float(metrics[key]), epoch)
        # The last epoch's weights are the trial's result: stopping then would save nothing.
        if epoch < self._epochs and self.trial.should_prune():
            self.trial.set_user_attr(PRUNED_AT, epoch)
            raise TrialPrunedError(f"trial {self.ref.number} pruned at epoch {epoch} ({key} = {metrics[key]:.5g})",
                                   epoch)
