"""Flow parameters and results: pydantic models (Prefect renders parameters as forms and validates them
before a run starts). Results are small: ids, URIs, digests and a few metrics, never tensors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genlib.evaluation.profiles import EvalProfile
from genlib.models import list_models
from genlib.plan import ExecutionPlan
from genlib.presets import ProfileName
from genlib.spec import Overrides, RunSpec
from genlib.sweep.refs import TrialRef
from genlib.tracking.registry import Registration

# The registered model names as a Literal, so the Prefect UI offers a choice (and pydantic refuses others).
ALL_MODELS: tuple[str, ...] = tuple(list_models())
ModelName = Literal[ALL_MODELS]  # type: ignore[valid-type]
Device = Literal["auto", "cpu", "cuda", "mps"]
# A crashed training is tried again this many times, resuming from its last checkpoint each time.
TRAIN_RETRIES = 1
DEVICE_HELP = "auto: $GENLIB_DEVICE when set (work pools set it), else CUDA when present, else the CPU"
MODEL_OVERRIDES_EXAMPLE = {"vae": {"latent_dim": 8}, "gan": {"lr": 1e-4}}
TRAIN_OVERRIDES_EXAMPLE = {"epochs": 5, "batch_size": 128}
EVAL_OVERRIDES_EXAMPLE = {"fid_samples": 1000}


def _as_value_error(fn: Any) -> Any:
    """Run ``fn()``; a genlib error (one line) becomes the ValueError pydantic reports for the field."""
    from genlib.errors import GenlibError

    try:
        return fn()
    except GenlibError as err:
        raise ValueError(str(err)) from None


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class DataParams(_Params):
    """Which data set, how it is split, and optionally a deterministic subset (for smoke runs and tests)."""

    dataset: str = Field("mnist", min_length=1, description="a named data set (`genlib datasets`) or a path")
    data_root: str | None = Field(None, description="folder with torchvision-layout data (default $GENLIB_DATA_ROOT)")
    seed: int = Field(0, description="split seed")
    n_train: int | None = Field(None, ge=1, description="keep this many training examples (None: all)")
    n_val: int | None = Field(None, ge=1)
    n_test: int | None = Field(None, ge=1)


class DatasetRef(_Params):
    """What ``prepare_data`` hands on: enough to reload the same splits anywhere and check they match."""

    params: DataParams
    name: str
    digest: str
    sizes: dict[str, int]
    image_shape: tuple[int, int, int]
    num_classes: int
    experiment_id: str
    run_id: str | None = None
    baselines: dict[str, float] = Field(default_factory=dict)


class TrainParams(_Params):
    """One family's training: a profile's settings with overrides (genlib.spec.resolve_spec merges them), or
    the resolved ``spec`` itself (the pipeline hands its spec to the worker, so nothing is resolved twice)."""

    family: ModelName = Field(description="registered model name")  # type: ignore[valid-type]
    profile: ProfileName = "quick"
    data: DataParams = DataParams()
    overrides: Overrides = Field(Overrides(), description="model / train / evaluation fields over the profile's",
                                 json_schema_extra={"examples": [{"model": {"latent_dim": 8}, "train": {"epochs": 5}}]})
    spec: RunSpec | None = Field(None, description="the resolved run spec (profile and overrides then unused)")
    device: Device = Field("auto", description=DEVICE_HELP)
    image_every: int | None = Field(None, ge=1, description="also log image grids every that many epochs")
    expected_digest: str | None = Field(None, description="refuse to train when the loaded data's digest differs")
    parent_run_id: str | None = Field(None, description="MLflow run to nest the train run under (the pipeline's)")
    retries: int = Field(TRAIN_RETRIES, ge=0, description="Prefect retries of a failed training; each resumes from "
                         "the last checkpoint")
    retrain: bool = Field(False, description="train again even when a finished run has this config and data "
                          "(otherwise that run is reused)")
    trial: TrialRef | None = Field(None, description="the sweep trial this training is (genlib sweep): it reports "
                                   "each epoch's validation metric to the study and stops when pruned")

    @model_validator(mode="after")
    def _spec_valid(self) -> TrainParams:
        # Resolve now, so a bad value fails validation before any work starts.
        from genlib.spec import resolve_spec

        if self.spec is not None:
            if self.spec.family != self.family:
                raise ValueError(f"spec is for {self.spec.family}, family is {self.family}")
        else:
            _as_value_error(lambda: resolve_spec(self.profile, self.family, self.overrides))
        return self

    def resolve(self, data: Any) -> RunSpec:
        """The RunSpec for ``data`` (its image shape and class count): ``spec`` when given."""
        from genlib.spec import data_shape, resolve_spec

        if self.spec is not None:
            return self.spec
        return resolve_spec(self.profile, self.family, self.overrides, data_shape(data))


class TrainResult(_Params):
    run_id: str
    model_uri: str
    model_id: str | None = None
    family: str
    config_key: str
    metrics: dict[str, float] = Field(default_factory=dict)
    train_seconds: float = Field(0.0, description="compute: the fit without its MLflow logging")
    tracking_seconds: float = Field(0.0, description="MLflow logging during and after the fit (model included)")
    device: str = "cpu"
    resumed_from_epoch: int | None = Field(None, description="the checkpoint's epoch when an interrupted training "
                                           "was resumed")
    cached: bool = Field(False, description="True when this result came from the task cache (nothing retrained)")


class RunRef(_Params):
    """A run a task made (data, suite, report): its id, the compute seconds it took, and whether it was cached."""

    run_id: str
    experiment_id: str | None = None
    seconds: float = 0.0
    cached: bool = False


class EvaluateParams(_Params):
    model_uri: str = Field(min_length=1, description="models:/..., runs:/... or models:/<name>@<alias>")
    data: DataParams = DataParams()
    profile: ProfileName = "quick"
    device: Device = Field("auto", description=DEVICE_HELP)
    eval_overrides: dict[str, Any] = Field(default_factory=dict, description="evaluation profile fields over the "
                                           "profile's", json_schema_extra={"examples": [EVAL_OVERRIDES_EXAMPLE]})
    train_run_id: str | None = Field(None, description="training run the evaluation belongs to (for tags)")
    expected_digest: str | None = None

    @model_validator(mode="after")
    def _profile_valid(self) -> EvaluateParams:
        self.evaluation()
        return self

    def evaluation(self) -> EvalProfile:
        from genlib.spec import resolve_eval

        return _as_value_error(lambda: resolve_eval(self.profile, {"evaluation": self.eval_overrides}))


class EvaluateResult(_Params):
    run_id: str
    model_uri: str
    family: str
    metrics: dict[str, float] = Field(default_factory=dict)
    tables: list[str] = Field(default_factory=list)
    eval_seconds: float = 0.0
    tracking_seconds: float = 0.0
    cached: bool = False


class RegisterParams(_Params):
    run_id: str = Field(min_length=1)
    model_uri: str = Field(min_length=1)
    family: ModelName  # type: ignore[valid-type]
    dataset: str
    dataset_digest: str
    metrics: dict[str, float] = Field(default_factory=dict)
    eval_run_id: str | None = Field(None, description="the evaluation run whose metrics these are")


class PromoteParams(_Params):
    name: str = Field(min_length=1, description="registered model, e.g. genlib-vae-mnist")
    version: str = Field(min_length=1, description="version number or alias (e.g. challenger)",
                         json_schema_extra={"examples": ["challenger", "1"]})
    alias: str = "champion"
    force: bool = False


class PipelineParams(_Params):
    """The nightly job: one data preparation, then train -> evaluate -> register per family, then the suite."""

    # As `make run`: real MNIST, seeded 10,000 training and 2,000 validation images, the standard test set.
    data: DataParams = DataParams(dataset="mnist", n_train=10000, n_val=2000)
    # A static default (not a factory), so the deployment form shows every family selected.
    models: list[ModelName] = Field(list(ALL_MODELS), min_length=1,  # type: ignore[valid-type]
                                    description="families to train, evaluate and register")
    profile: ProfileName = Field("quick", description="training presets: quick (CPU, minutes) or full (paper scale)")
    eval_profile: ProfileName | None = Field(None, description="evaluation profile (default: the training profile)")
    device: Device = Field("auto", description=DEVICE_HELP)
    model_overrides: dict[ModelName, dict[str, Any]] = Field(  # type: ignore[valid-type]
        default_factory=dict, description="per family: model config fields over the profile's",
        json_schema_extra={"examples": [MODEL_OVERRIDES_EXAMPLE]})
    train_overrides: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields for every family",
                                            json_schema_extra={"examples": [TRAIN_OVERRIDES_EXAMPLE]})
    eval_overrides: dict[str, Any] = Field(default_factory=dict, description="evaluation profile fields",
                                           json_schema_extra={"examples": [EVAL_OVERRIDES_EXAMPLE]})
    suite: bool = Field(True, description="also run the suite's sections and the combined report")
    dispatch: Literal["auto", "local", "deployment"] = Field(
        "auto", description="train in-process, on the train deployment's workers, or there when it exists (auto)")
    train_deployment: str = Field("train/train", description="flow-name/deployment-name used for dispatch")
    workers: int | None = Field(
        None, ge=1, le=64, description="in-process training: how many local processes run families (and the "
        "suite) at once; default one per CPU core on the CPU, one on an accelerator")
    retrain: bool = Field(False, description="train every family again even when a finished run has the same "
                          "config and data (by default such a run is reused and nothing new is registered)")
    plan: ExecutionPlan | None = Field(None, description="how this run executes, resolved once from device, workers "
                                       "and dispatch by the entry point (genlib pipeline); empty: the flow resolves it")

    @field_validator("models")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _overrides_valid(self) -> PipelineParams:
        from genlib.spec import resolve_spec

        unknown = sorted(set(self.model_overrides) - set(self.models))
        if unknown:
            raise ValueError(f"model_overrides for families not in models: {', '.join(unknown)}")
        for family in self.models:
            _as_value_error(lambda: resolve_spec(self.profile, family, self.overrides(family)))
        self.evaluation()
        return self

    def without_label_needing(self, dataset: Any) -> tuple[PipelineParams, dict[str, str]]:
        """These parameters without the families that need labels ``dataset`` lacks, and {family: why skipped}.
        Raises ConfigError when no family is left."""
        from genlib.data.splits import UNLABELLED_REASON, has_labels
        from genlib.errors import ConfigError
        from genlib.models.catalog import model_info

        if has_labels(dataset):
            return self, {}
        skipped = {f: f"{UNLABELLED_REASON}: {f} is conditional" for f in self.models if model_info(f).conditional}
        left = [f for f in self.models if f not in skipped]
        if not left:
            raise ConfigError(f"{dataset.name} has no class labels and every family asked for "
                              f"({', '.join(self.models)}) is conditional")
        return self.model_copy(update={"models": left, "model_overrides": {
            f: o for f, o in self.model_overrides.items() if f in left}}), skipped

    @property
    def evaluation_profile(self) -> str:
        return self.eval_profile or self.profile

    def overrides(self, family: str) -> Overrides:
        """The sections of ``family``'s overrides (assembled, not merged: resolve_spec merges)."""
        return Overrides(model=self.model_overrides.get(family, {}), train=self.train_overrides,
                         evaluation=self.eval_overrides)

    def evaluation(self) -> EvalProfile:
        from genlib.spec import resolve_eval

        return _as_value_error(lambda: resolve_eval(self.evaluation_profile, {"evaluation": self.eval_overrides}))

    def resolve_plan(self) -> ExecutionPlan:
        """The plan of these parameters' device, dispatch and workers for their jobs (the families and the
        suite), as an entry point resolves it (genlib.plan.resolve_plan)."""
        from genlib.plan import resolve_plan

        return resolve_plan(self.device, self.dispatch, self.workers, len(self.models) + int(self.suite))

    def train_params(self, spec: RunSpec, expected_digest: str | None = None,
                     parent_run_id: str | None = None) -> TrainParams:
        """One family's training parameters; its device is the plan's (``device`` as asked for when training
        goes to the deployment: the worker resolves "auto" on its own machine)."""
        device = self.plan.device if self.plan is not None and self.plan.dispatch == "local" else self.device
        return TrainParams(family=spec.family, profile=self.profile, data=self.data, device=device, spec=spec,
                           expected_digest=expected_digest, parent_run_id=parent_run_id, retrain=self.retrain)


class FamilySummary(_Params):
    family: str
    train: TrainResult | None = None
    evaluation: EvaluateResult | None = None
    registration: Registration | None = None
    error: str | None = Field(None, description="first line of the error that stopped this family")
    skipped: str | None = Field(None, description="why this family was not trained (e.g. it needs class labels)")


class PipelineResult(_Params):
    dataset: DatasetRef
    families: list[FamilySummary]
    run_id: str | None = Field(None, description="the pipeline's parent MLflow run")
    report_run_id: str | None = None
    tracking_uri: str
    seconds: dict[str, float] = Field(default_factory=dict)


# The task results that may be persisted (flows.results loads back these classes only).
RESULT_MODELS: tuple[type[BaseModel], ...] = (DatasetRef, TrainResult, EvaluateResult, RunRef, Registration,
                                              FamilySummary, PipelineResult)
