"""The run spec: (profile, family, overrides, data shape) resolved once into a frozen, typed ``RunSpec``.

:func:`resolve_spec` is the only place where user overrides meet a profile's presets; the CLI, the
flows and the benchmarks all call it and pass the typed result on. :func:`parse_set` is the one parser
of ``--set FIELD=VALUE``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genlib.errors import ConfigError
from genlib.evaluation.profiles import EvalProfile
from genlib.models import AnyModelConfig, get_config_class, get_model_class
from genlib.models.registry import format_validation_error
from genlib.presets import FamilyPreset, Profile, ProfileName, get_profile, register_profile  # noqa: F401
from genlib.training.config import TrainConfig

# Checkpoint often enough that an interrupted run loses at most this share of its epochs.
MAX_LOST_EPOCH_SHARE = 0.05
SECTIONS = ("model", "train", "evaluation")
_SECTION_ALIASES = {"eval": "evaluation"}


class Overrides(BaseModel):
    """User changes to a profile's settings, by section: model config, TrainConfig, EvalProfile fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: dict[str, Any] = Field(default_factory=dict, description="model config fields",
                                  json_schema_extra={"examples": [{"latent_dim": 16}]})
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields",
                                  json_schema_extra={"examples": [{"epochs": 5, "batch_size": 128}]})
    evaluation: dict[str, Any] = Field(default_factory=dict, description="evaluation profile fields",
                                       json_schema_extra={"examples": [{"fid_samples": 1000}]})

    def __bool__(self) -> bool:
        return bool(self.model or self.train or self.evaluation)


class RunSpec(BaseModel):
    """Everything that decides one family's run: what to build, how to train it, how to evaluate it."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    family: str
    profile: str
    model: AnyModelConfig  # type: ignore[valid-type]
    train: TrainConfig
    evaluation: EvalProfile

    def canonical_json(self, sections: Sequence[str] = ("family", "model", "train", "evaluation")) -> str:
        """Sorted, compact JSON of the given fields (the profile's name is a label, not a setting)."""
        dump = self.model_dump(mode="json", include=set(sections))
        return json.dumps(dump, sort_keys=True, separators=(",", ":"))

    def cache_key(self, digest: str, sections: Sequence[str] = ("family", "model", "train")) -> str:
        """Key of the work the sections decide on data of ``digest``: training by default (the weights
        depend on model and train settings only), or pass every section for an evaluation."""
        return hashlib.sha256(f"{self.canonical_json(sections)}|{digest}".encode()).hexdigest()[:16]


def data_shape(data: Any) -> tuple[tuple[int, int, int], int]:
    """(image shape (C, H, W), class count) of a DataSplits, as :func:`resolve_spec` takes it."""
    return tuple(int(d) for d in data.x_train.shape[1:]), max(int(data.num_classes), 2)  # type: ignore[return-value]


def _merged(cls: type[BaseModel], base: BaseModel, updates: Mapping[str, Any], what: str) -> Any:
    """``base`` with ``updates`` applied, validated as ``cls``: the one place where settings are merged."""
    if not updates:
        return base
    try:
        return cls(**{**base.model_dump(), **updates})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, prefix=what)) from None


def as_overrides(overrides: Overrides | Mapping[str, Any] | None) -> Overrides:
    if overrides is None or isinstance(overrides, Overrides):
        return overrides or Overrides()
    unknown = set(overrides) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"overrides: unknown section {sorted(unknown)[0]!r}; use {', '.join(SECTIONS)}")
    return Overrides(**overrides)


def _default_checkpoint_every(train: TrainConfig) -> TrainConfig:
    if train.checkpoint_every is not None:
        return train
    every = max(1, math.floor(train.epochs * MAX_LOST_EPOCH_SHARE))
    return train.model_copy(update={"checkpoint_every": every})  # a valid value of a validated field


def resolve_eval(profile: str, overrides: Overrides | Mapping[str, Any] | None = None) -> EvalProfile:
    """The evaluation settings of ``profile`` with the ``evaluation`` overrides (for the suite)."""
    return _merged(EvalProfile, get_profile(profile).evaluation, as_overrides(overrides).evaluation,
                   "evaluation")


def get_eval_profile(name: str, **overrides: Any) -> EvalProfile:
    """The evaluation settings of profile ``name`` with validated overrides: a shorthand for :func:`resolve_eval`."""
    return resolve_eval(name, {"evaluation": overrides})


def resolve_spec(
    profile: str,
    family: str,
    overrides: Overrides | Mapping[str, Any] | None = None,
    data_shape: tuple[Sequence[int], int] | None = None,
) -> RunSpec:
    """The frozen RunSpec of ``family`` in ``profile`` with ``overrides`` applied.

    Args:
        data_shape: (image shape (C, H, W), class count) of the data, which the model config takes
            over (a model must fit its data); None keeps the preset's (1, 28, 28) and 10 classes.
    Raises UnknownNameError for an unknown profile or family, ConfigError (one line, naming the
    field) for an invalid value.
    """
    get_model_class(family)  # unknown family: one line listing the valid names
    prof = get_profile(profile)
    preset = prof.preset(family)
    ov = as_overrides(overrides)
    model_updates = dict(ov.model)
    if data_shape is not None:
        shape, classes = data_shape
        model_updates.update(image_shape=tuple(shape), num_classes=max(int(classes), 2))
    model_updates.pop("model_name", None)
    model = _merged(get_config_class(family), preset.model, model_updates, family)
    train = _default_checkpoint_every(_merged(TrainConfig, preset.train, ov.train, "train"))
    evaluation = resolve_eval(profile, ov)
    return RunSpec(family=family, profile=profile, model=model, train=train, evaluation=evaluation)


def derive_profile(name: str, base: str, families: Mapping[str, Overrides | Mapping[str, Any]],
                   evaluation: Mapping[str, Any] | None = None, description: str = "") -> Profile:
    """Register profile ``name``: the presets of ``base`` for the listed families with their ``model`` and
    ``train`` overrides, and ``base``'s evaluation settings with ``evaluation``; merged and validated here.

    How benchmarks define their presets (``bench.quality``'s ``quality-*`` profiles) on the same system.
    """
    prof = get_profile(base)
    presets = {}
    for family, overrides in families.items():
        ov, preset = as_overrides(overrides), prof.preset(family)
        presets[family] = FamilyPreset(model=_merged(get_config_class(family), preset.model, ov.model, family),
                                       train=_merged(TrainConfig, preset.train, ov.train, "train"))
    ev = _merged(EvalProfile, prof.evaluation, {**(evaluation or {}), "name": name}, "evaluation")
    return register_profile(Profile(name=name, families=presets, evaluation=ev, description=description))


def _field_sections(family: str | None) -> dict[str, set[str]]:
    model_fields = set(get_config_class(family).model_fields) if family else set()
    if family is None:
        from genlib.models import list_models

        for name in list_models():
            model_fields |= set(get_config_class(name).model_fields)
    model_fields -= {"model_name"}
    return {"model": model_fields, "train": set(TrainConfig.model_fields), "evaluation": set(EvalProfile.model_fields)}


def _parse_value(raw: str) -> Any:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return tuple(value) if isinstance(value, list) else value


def parse_set(assignments: Sequence[str] | None, family: str | None = None,
              values: Mapping[str, Any] | None = None) -> Overrides:
    """``--set FIELD=VALUE`` assignments (and typed ``values`` from named options; None values skipped)
    as Overrides.

    FIELD is ``model.NAME``, ``train.NAME``, ``evaluation.NAME`` (or ``eval.NAME``), or a bare NAME
    found in exactly one of the three (the model config of ``family``, or of any family when None).
    VALUE is read as JSON when it parses (numbers, booleans, null, lists as tuples), else as a string.
    Values are validated when the spec is resolved. Raises ConfigError for a malformed or unknown FIELD.
    """
    fields = _field_sections(family)
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    items: list[tuple[str, Any, str]] = []
    for item in assignments or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. train.epochs=5")
        items.append((name.strip(), _parse_value(raw), f"--set {item!r}"))
    items += [(k, v, f"--{k.replace('_', '-')}") for k, v in (values or {}).items() if v is not None]
    for name, value, origin in items:
        section, dot, field = name.partition(".")
        if dot:
            section = _SECTION_ALIASES.get(section, section)
            if section not in fields:
                raise ConfigError(f"{origin}: unknown section {section!r}; use model., train. or evaluation.")
        else:
            field = name.replace("-", "_")
            homes = [s for s in SECTIONS if field in fields[s]]
            if len(homes) > 1:
                raise ConfigError(f"{origin}: {field} is a field of {' and '.join(homes)}; "
                                  f"write {homes[0]}.{field} or {homes[1]}.{field}")
            section = homes[0] if homes else ""
        field = field.replace("-", "_")
        if not section or field not in fields[section]:
            where = f"the {family} model config" if family and section in ("", "model") else section or "any config"
            raise ConfigError(f"{origin}: unknown field {field!r} in {where}")
        out[section][field] = value
    return Overrides(**out)
