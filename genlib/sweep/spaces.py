"""Search spaces: per family, which model and train fields a sweep varies and over what, typed and checked
against the family's config (the sweep's counterpart of :mod:`genlib.presets`; no optuna import here).

A space names its fields as the run spec does (``model.lr``, ``train.epochs``). Each is a float range, an
integer range or a list of choices; the objective is ``metric`` (a per-epoch validation metric ``val_*``,
read from the training, or an evaluation metric such as ``fid``, measured on each finished trial), and
``prune_on`` the per-epoch validation metric the pruner sees (None: the family has no per-epoch metric
that compares trials, and its trials are never pruned). Only :func:`resolve_space` changes a declared
space: ``--space`` replaces or adds fields, ``--set`` pins them (a pinned field leaves the space).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from genlib.errors import ConfigError

Direction = Literal["minimize", "maximize"]
# Metric names whose higher values are better (the others are losses or distances).
_HIGHER_IS_BETTER = ("log_likelihood", "recognised", "precision", "recall", "accuracy", "inception")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FloatRange(_Frozen):
    """A real value in [low, high], sampled on a log scale when ``log``."""

    kind: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False

    def describe(self) -> str:
        return f"{self.low:g} .. {self.high:g}{' (log)' if self.log else ''}"


class IntRange(_Frozen):
    """An integer in [low, high] in steps of ``step``."""

    kind: Literal["int"] = "int"
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    def describe(self) -> str:
        return f"{self.low} .. {self.high}{f' step {self.step}' if self.step > 1 else ''}{' (log)' if self.log else ''}"


class Choice(_Frozen):
    """One of ``choices`` (numbers, strings, booleans or tuples such as hidden layer widths)."""

    kind: Literal["choice"] = "choice"
    choices: tuple[Any, ...]

    def describe(self) -> str:
        return " | ".join(json.dumps(list(c) if isinstance(c, tuple) else c) for c in self.choices)


Param = Annotated[Union[FloatRange, IntRange, Choice], Field(discriminator="kind")]


class SearchSpace(_Frozen):
    """What a sweep of ``family`` varies (``params``, by ``section.field``) and what it optimises."""

    family: str
    metric: str = Field(description="objective: a per-epoch validation metric (val_*) or an evaluation metric")
    direction: Direction
    prune_on: str | None = Field(None, description="per-epoch validation metric the pruner reads (same direction)")
    params: dict[str, Param]

    @property
    def from_training(self) -> bool:
        """True when the objective is read from the training's per-epoch metrics (no evaluation per trial)."""
        return self.metric.startswith("val_")


def direction_of(metric: str) -> Direction:
    """The direction a metric is optimised in, from its name (likelihoods, recognised share, precision,
    recall, accuracy and inception score up; losses, errors and distances down)."""
    return "maximize" if any(word in metric for word in _HIGHER_IS_BETTER) else "minimize"


_LR = FloatRange(low=3e-4, high=3e-3, log=True)
_MLP = Choice(choices=((128, 64), (256, 128), (512, 256)))
_AE_PARAMS: dict[str, Any] = {"model.lr": _LR, "model.latent_dim": Choice(choices=(8, 16, 32, 64)),
                              "model.hidden_dims": _MLP, "train.batch_size": Choice(choices=(32, 64, 128)),
                              "train.epochs": IntRange(low=5, high=15)}
_VAE_PARAMS: dict[str, Any] = {"model.lr": _LR, "model.latent_dim": Choice(choices=(8, 10, 16, 32)),
                               "model.hidden_dims": Choice(choices=((256, 128), (400, 200), (512, 256))),
                               "train.batch_size": Choice(choices=(64, 128)), "train.epochs": IntRange(low=15, high=40)}
_GAN_PARAMS: dict[str, Any] = {"model.lr": FloatRange(low=2e-4, high=2e-3, log=True),
                               "model.latent_dim": Choice(choices=(32, 64, 100)),
                               "model.generator_features": Choice(choices=(16, 32)),
                               "model.discriminator_features": Choice(choices=(16, 32)),
                               "train.epochs": IntRange(low=5, high=12)}

# Ranges around the quick presets (which every range contains, so the preset can run as trial 0). The
# VAE's objective is the validation negative ELBO; beta is left out, since it changes what that loss
# weighs. A GAN's losses compare a generator with its own discriminator only, so the GANs optimise the
# evaluation's FID and are not pruned.
SPACES: dict[str, SearchSpace] = {s.family: s for s in (
    SearchSpace(family="ae", metric="val_sq_err_per_image", direction="minimize", prune_on="val_sq_err_per_image",
                params=_AE_PARAMS),
    SearchSpace(family="dae", metric="val_sq_err_per_image", direction="minimize", prune_on="val_sq_err_per_image",
                params={**_AE_PARAMS, "model.noise_level": FloatRange(low=0.1, high=0.5)}),
    SearchSpace(family="conv-ae", metric="val_sq_err_per_image", direction="minimize",
                prune_on="val_sq_err_per_image",
                params={"model.lr": _LR, "model.latent_dim": Choice(choices=(8, 16, 32, 64)),
                        "model.channels": Choice(choices=((16, 32), (32, 64))), "train.epochs": IntRange(low=3, high=10)}),
    SearchSpace(family="vae", metric="val_loss", direction="minimize", prune_on="val_loss",
                params={**_VAE_PARAMS, "model.prior_components": Choice(choices=(10, 25, 50))}),
    SearchSpace(family="cvae", metric="val_loss", direction="minimize", prune_on="val_loss", params=_VAE_PARAMS),
    SearchSpace(family="gan", metric="fid", direction="minimize", prune_on=None,
                params={**_GAN_PARAMS, "model.clusters": Choice(choices=(0, 10, 25, 50))}),
    SearchSpace(family="cgan", metric="fid", direction="minimize", prune_on=None, params=_GAN_PARAMS),
    SearchSpace(family="rbm", metric="val_pseudo_log_likelihood", direction="maximize",
                prune_on="val_pseudo_log_likelihood",
                params={"model.lr": FloatRange(low=0.01, high=0.1, log=True),
                        "model.hidden_units": Choice(choices=(128, 256, 512)), "model.cd_k": IntRange(low=1, high=5),
                        "train.epochs": IntRange(low=10, high=25)}),
)}


def get_space(family: str) -> SearchSpace:
    """The declared space of ``family``; UnknownNameError (one line, the valid names) otherwise."""
    from genlib.errors import UnknownNameError

    try:
        return SPACES[family]
    except KeyError:
        raise UnknownNameError(f"no search space for {family!r}; families with one: "
                               f"{', '.join(sorted(SPACES))}") from None


def _field_name(name: str, family: str, origin: str) -> str:
    """``section.field`` of a bare or dotted field name (genlib.spec.parse_set's rules); ConfigError when the
    family's model config and TrainConfig have no such field, or it is an evaluation setting."""
    from genlib.spec import parse_set

    try:
        overrides = parse_set([f"{name}=0"], family)
    except ConfigError:
        raise ConfigError(f"{origin}: unknown field {name!r}; a space takes fields of the {family} model "
                          "config (model.NAME) or of TrainConfig (train.NAME)") from None
    for section in ("model", "train"):
        if getattr(overrides, section):
            return f"{section}.{next(iter(getattr(overrides, section)))}"
    raise ConfigError(f"{origin}: {name} is an evaluation setting; a sweep varies model. and train. fields")


def _number(text: str, origin: str) -> float | int:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"{origin}: {text!r} is not a number")
    return value


def parse_space_option(item: str, family: str) -> tuple[str, Param]:
    """One ``--space FIELD=LOW:HIGH[:log]`` (a range; integers when both ends are) or ``FIELD=A,B,C`` /
    ``FIELD=[[256,128],[512,256]]`` (choices). Returns (``section.field``, the parameter)."""
    origin = f"--space {item!r}"
    name, sep, raw = item.partition("=")
    if not sep or not name.strip() or not raw.strip():
        raise ConfigError(f"{origin}: expected FIELD=LOW:HIGH[:log] or FIELD=A,B,C, e.g. model.lr=1e-4:1e-2:log")
    field = _field_name(name.strip(), family, origin)
    raw = raw.strip()
    if raw.startswith("["):
        try:
            values = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"{origin}: the choices are not a JSON list") from None
        return field, Choice(choices=tuple(tuple(v) if isinstance(v, list) else v for v in values))
    if ":" in raw:
        parts = raw.split(":")
        log = parts[-1] == "log"
        parts = parts[:-1] if log else parts
        if len(parts) != 2:
            raise ConfigError(f"{origin}: a range is LOW:HIGH or LOW:HIGH:log")
        low, high = (_number(p, origin) for p in parts)
        if isinstance(low, int) and isinstance(high, int):
            return field, IntRange(low=low, high=high, log=log)
        return field, FloatRange(low=float(low), high=float(high), log=log)
    values = [v.strip() for v in raw.split(",") if v.strip()]
    parsed = []
    for v in values:
        try:
            parsed.append(json.loads(v))
        except json.JSONDecodeError:
            parsed.append(v)
    return field, Choice(choices=tuple(parsed))


def _check_param(field: str, param: Any, space: SearchSpace, profile: str, pins: Mapping[str, Any]) -> None:
    """ConfigError for an empty range, a log range through zero, or a value the family's config refuses."""
    from genlib.spec import resolve_spec

    origin = f"search space {space.family}: {field}"
    if isinstance(param, Choice):
        if not param.choices:
            raise ConfigError(f"{origin}: no choices (an empty range)")
        values = list(param.choices)
    else:
        if param.low > param.high or (isinstance(param, FloatRange) and param.low == param.high):
            raise ConfigError(f"{origin}: empty range {param.low:g} .. {param.high:g} (pin one value with --set)")
        if param.log and param.low <= 0:
            raise ConfigError(f"{origin}: a log range needs low > 0, got {param.low:g}")
        values = [param.low, param.high]
    section, name = field.split(".", 1)
    for value in values:
        overrides = {"model": dict(pins.get("model", {})), "train": dict(pins.get("train", {}))}
        overrides[section][name] = value
        try:
            resolve_spec(profile, space.family, overrides)
        except ConfigError as err:
            raise ConfigError(f"{origin}: {value!r} is not a valid value ({err})") from None


def resolve_space(family: str, profile: str = "quick", space_items: Sequence[str] = (),
                  pins: Mapping[str, Mapping[str, Any]] | None = None, metric: str | None = None) -> SearchSpace:
    """The space a sweep of ``family`` searches: the declared one with ``--space`` items replacing or adding
    fields, the fields in ``pins`` (``{"model": {...}, "train": {...}}``, from ``--set``) removed, and the
    objective ``metric`` when given. Every field and bound is checked; raises ConfigError (one line)."""
    declared = get_space(family)
    pins = {k: dict(v) for k, v in (pins or {}).items()}
    params = dict(declared.params)
    for item in space_items:
        field, param = parse_space_option(item, family)
        params[field] = param
    pinned = {f"{s}.{k}" for s in ("model", "train") for k in pins.get(s, {})}
    params = {k: v for k, v in params.items() if k not in pinned}
    space = declared.model_copy(update={"params": params})
    if metric:
        # A per-epoch objective is also what the pruner reads; an evaluation metric keeps the declared
        # pruning metric when it points the same way.
        direction = direction_of(metric)
        prune_on = metric if metric.startswith("val_") else (
            declared.prune_on if direction == declared.direction else None)
        space = space.model_copy(update={"metric": metric, "direction": direction, "prune_on": prune_on})
    if not space.params:
        raise ConfigError(f"search space {family}: every field is pinned by --set; nothing left to search")
    for field, param in space.params.items():
        _field_name(field, family, f"search space {family}")
        _check_param(field, param, space, profile, pins)
    return space


def describe_spaces(families: Sequence[str] | None = None) -> str:
    """The declared spaces as text: one block per family (objective, pruning metric, each field's range)."""
    lines = []
    for family in families or sorted(SPACES):
        space = get_space(family)
        pruning = f"pruned on {space.prune_on}" if space.prune_on else "not pruned"
        lines.append(f"{family}: {space.direction} {space.metric}, {pruning}")
        width = max(len(k) for k in space.params)
        lines += [f"  {k.ljust(width)}  {p.describe()}" for k, p in space.params.items()]
    return "\n".join(lines)
