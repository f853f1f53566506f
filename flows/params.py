"""Flow parameters and results: pydantic models (Prefect renders parameters as forms and validates them
before a run starts). Results are small: ids, URIs, digests and a few metrics, never tensors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genlib.models import list_models

# The registered model names as a Literal, so the Prefect UI offers a drop-down (and pydantic refuses others).
ModelName = Literal[tuple(list_models())]  # type: ignore[valid-type]
ProfileName = Literal["quick", "full"]
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps)$"


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class DataParams(_Params):
    """Which data set, how it is split, and optionally a deterministic subset (for smoke runs and tests)."""

    dataset: str = Field("digits", min_length=1, description="a named data set (`genlib datasets`) or a path")
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


def _check_overrides(family: str, profile: str, model_overrides: dict[str, Any],
                     train_overrides: dict[str, Any]) -> None:
    from genlib.models import make_config
    from genlib.profiles import family_settings
    from genlib.training import TrainConfig

    settings = family_settings(profile, family)
    make_config(family, {**settings.model, **model_overrides})
    TrainConfig(**{**settings.train, **train_overrides})


def _check_eval_profile(profile: str, overrides: dict[str, Any]) -> None:
    from genlib.errors import GenlibError
    from genlib.evaluation import get_eval_profile

    try:
        get_eval_profile(profile, **overrides)
    except GenlibError as err:
        raise ValueError(str(err)) from None


class TrainParams(_Params):
    """One family's training: profile settings, overridden field by field."""

    family: ModelName = Field(description="registered model name")  # type: ignore[valid-type]
    profile: ProfileName = "quick"
    data: DataParams = DataParams()
    model_overrides: dict[str, Any] = Field(default_factory=dict, description="model config fields over the profile's")
    train_overrides: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields over the profile's")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="auto uses $GENLIB_DEVICE when set, else CUDA if present")
    image_every: int | None = Field(None, ge=1, description="also log image grids every that many epochs")
    expected_digest: str | None = Field(None, description="refuse to train when the loaded data's digest differs")

    @model_validator(mode="after")
    def _configs_valid(self) -> TrainParams:
        # Build both configs now, so a bad value fails validation before any work starts.
        from genlib.errors import GenlibError

        try:
            _check_overrides(self.family, self.profile, self.model_overrides, self.train_overrides)
        except GenlibError as err:
            raise ValueError(str(err)) from None
        return self


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
    cached: bool = Field(False, description="True when this result came from the task cache (nothing retrained)")


class EvaluateParams(_Params):
    model_uri: str = Field(min_length=1, description="models:/..., runs:/... or models:/<name>@<alias>")
    data: DataParams = DataParams()
    profile: ProfileName = "quick"
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    eval_overrides: dict[str, Any] = Field(default_factory=dict, description="EvalProfile fields over the profile's")
    train_run_id: str | None = Field(None, description="training run the evaluation belongs to (for tags)")
    expected_digest: str | None = None

    @model_validator(mode="after")
    def _profile_valid(self) -> EvaluateParams:
        _check_eval_profile(self.profile, self.eval_overrides)
        return self


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


class RegisterResult(_Params):
    name: str
    version: str
    aliases: tuple[str, ...]
    promoted: bool
    reason: str
    failed_gate: str | None = None


class PromoteParams(_Params):
    name: str = Field(min_length=1, description="registered model, e.g. genlib-vae-digits")
    version: str = Field(min_length=1, description="version number or alias (e.g. challenger)")
    alias: str = "champion"
    force: bool = False


class PipelineParams(_Params):
    """The nightly job: one data preparation, then train -> evaluate -> register per family, then the suite."""

    data: DataParams = DataParams()
    models: list[ModelName] = Field(default_factory=lambda: list_models(), min_length=1)  # type: ignore[valid-type]
    profile: ProfileName = "quick"
    eval_profile: ProfileName | None = Field(None, description="evaluation profile (default: the training profile)")
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    model_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per family")
    train_overrides: dict[str, Any] = Field(default_factory=dict, description="for every family")
    eval_overrides: dict[str, Any] = Field(default_factory=dict, description="EvalProfile fields over the profile's")
    suite: bool = Field(True, description="also run the suite-level evaluation (five tables)")
    dispatch: Literal["auto", "local", "deployment"] = Field(
        "auto", description="train in-process, on the train deployment's workers, or there when it exists (auto)")
    train_deployment: str = Field("train/train", description="flow-name/deployment-name used for dispatch")

    @field_validator("models")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _overrides_valid(self) -> PipelineParams:
        from genlib.errors import GenlibError

        unknown = sorted(set(self.model_overrides) - set(self.models))
        if unknown:
            raise ValueError(f"model_overrides for families not in models: {', '.join(unknown)}")
        try:
            for family in self.models:
                _check_overrides(family, self.profile, self.model_overrides.get(family, {}), self.train_overrides)
        except GenlibError as err:
            raise ValueError(str(err)) from None
        _check_eval_profile(self.eval_profile or self.profile, self.eval_overrides)
        return self

    @property
    def evaluation_profile(self) -> str:
        return self.eval_profile or self.profile

    def train_params(self, family: str, expected_digest: str | None = None) -> TrainParams:
        return TrainParams(family=family, profile=self.profile, data=self.data, device=self.device,
                           model_overrides=self.model_overrides.get(family, {}), train_overrides=self.train_overrides,
                           expected_digest=expected_digest)


class FamilySummary(_Params):
    family: str
    train: TrainResult | None = None
    evaluation: EvaluateResult | None = None
    registration: RegisterResult | None = None
    error: str | None = Field(None, description="first line of the error that stopped this family")


class PipelineResult(_Params):
    dataset: DatasetRef
    families: list[FamilySummary]
    report_run_id: str | None = None
    tracking_uri: str
    seconds: dict[str, float] = Field(default_factory=dict)
