"""The sweep flow's parameters and results (pydantic: Prefect renders the parameters as the deployment's form
and validates them before a run starts; a bad space, N <= 0 or K <= 0 never starts one)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from flows.params import DEVICE_HELP, DataParams, Device, ModelName, TrainResult, _as_value_error, _Params
from genlib.plan import ExecutionPlan
from genlib.presets import ProfileName
from genlib.spec import Overrides
from genlib.sweep.refs import PrunerSettings
from genlib.tracking.registry import Registration

TrialState = Literal["complete", "pruned", "failed"]


class SweepParams(_Params):
    """An Optuna study of one family on one data set: ``trials`` more trials, at most ``parallel`` at once."""

    family: ModelName = Field(  # type: ignore[valid-type]
        description="the family to tune (`genlib sweep --list` shows the spaces)")
    data: DataParams = DataParams(dataset="mnist", n_train=10000, n_val=2000)
    profile: ProfileName = Field("quick", description="the presets the trials start from (the preset is trial 0)")
    trials: int = Field(16, ge=1, le=10000, description="trials to run now (a study continued adds this many)")
    parallel: int = Field(1, ge=1, le=64, description="trials at once (a Prefect global concurrency limit)")
    metric: str | None = Field(None, min_length=1, description="objective: a val_* training metric or an "
                               "evaluation metric (default: the family's space)")
    overrides: Overrides = Field(Overrides(), description="pinned model / train / evaluation fields (--set)",
                                 json_schema_extra={"examples": [{"train": {"epochs": 2}}]})
    space: list[str] = Field(default_factory=list, description="FIELD=LOW:HIGH[:log] or FIELD=A,B,C over the "
                             "family's space", json_schema_extra={"examples": [["model.lr=1e-4:1e-2:log"]]})
    study: str | None = Field(None, description="study name (default genlib-<family>-<dataset>-<profile>)")
    resume: bool = Field(False, description="only continue an existing study (an unknown one is an error)")
    storage: str | None = Field(None, description="Optuna storage URL (default: beside the tracking store)")
    pruner: PrunerSettings = PrunerSettings()
    device: Device = Field("auto", description=DEVICE_HELP)
    dispatch: Literal["auto", "local", "deployment"] = Field(
        "auto", description="trials here (a local pool of `parallel` processes) or on the train deployment's workers")
    train_deployment: str = Field("train/train", description="flow-name/deployment-name trials go to")
    plan: ExecutionPlan | None = Field(None, description="resolved by the entry point (genlib sweep); empty: the "
                                       "flow resolves it")

    @model_validator(mode="after")
    def _space_valid(self) -> SweepParams:
        from genlib.spec import resolve_spec

        _as_value_error(lambda: resolve_spec(self.profile, self.family, self.overrides))
        self.resolved_space()
        return self

    def resolved_space(self) -> Any:
        """The SearchSpace searched (genlib.sweep.spaces.resolve_space); ValueError (one line) when invalid."""
        from genlib.sweep.spaces import resolve_space

        pins = {"model": self.overrides.model, "train": self.overrides.train}
        return _as_value_error(lambda: resolve_space(self.family, self.profile, self.space, pins, self.metric))

    @property
    def study_name(self) -> str:
        from pathlib import Path

        return self.study or f"genlib-{self.family}-{Path(self.data.dataset).name}-{self.profile}"

    def resolve_plan(self) -> ExecutionPlan:
        """The execution plan: ``parallel`` local workers (the device's rule otherwise: genlib.plan)."""
        from genlib.plan import resolve_plan

        return resolve_plan(self.device, self.dispatch, self.parallel, self.parallel)


class TrialOutcome(_Params):
    """How one trial ended: its state, objective value, training result and (failed) first error line."""

    number: int
    state: TrialState
    value: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    train: TrainResult | None = None
    epochs_planned: int = 0
    epochs_run: int = 0
    error: str | None = None
    preset: bool = False


class SweepResult(_Params):
    study: str
    storage: str = Field(description="the Optuna storage, password hidden")
    run_id: str = Field(description="the sweep's parent MLflow run")
    experiment_id: str
    trials: list[TrialOutcome] = Field(description="this command's trials")
    total_trials: int = Field(description="trials in the study (earlier commands' included)")
    best_number: int | None = None
    best_value: float | None = None
    preset_value: float | None = None
    metric: str
    direction: str
    epochs_saved: int = Field(0, description="planned epochs the pruned trials did not run (this command's)")
    best_metrics: dict[str, float] = Field(default_factory=dict, description="the best trial's evaluation")
    preset_metrics: dict[str, float] = Field(default_factory=dict, description="the preset trial's evaluation")
    registration: Registration | None = None
    error: str | None = Field(None, description="why the best trial was not registered")
    seconds: float = 0.0
