"""One place that maps model names to (model class, config class), like torchvision's ``models/_api.py``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from genlib.errors import ConfigError, UnknownNameError
from genlib.models.catalog import BUILTIN, CLASS_FIELDS

_MODELS: dict[str, type] = {}
_builtin_imported = False

M = TypeVar("M", bound=type)


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator that registers a model under ``name``; refuses duplicates.

    The class must define ``config_class``, a pydantic config whose ``model_name`` is ``name``.
    A built-in family gets its capabilities from ``genlib.models.catalog`` (the one place they are
    declared); a model from elsewhere declares them on its class.
    """

    def wrap(cls: M) -> M:
        if name in _MODELS:
            raise ValueError(f"model name {name!r} is already registered by {_MODELS[name].__name__}")
        config_class = getattr(cls, "config_class", None)
        if config_class is None or config_class.model_fields["model_name"].default != name:
            raise TypeError(f"{cls.__name__}.config_class must record model_name={name!r}")
        info = BUILTIN.get(name)
        if info is not None:
            declared = sorted(set(CLASS_FIELDS) & set(vars(cls)))
            if info.class_name != cls.__name__ or declared:
                raise TypeError(f"{cls.__name__} registered as {name!r}: genlib/models/catalog.py names class "
                                f"{info.class_name} and declares its {', '.join(declared) or 'capabilities'}")
            for field, value in info.class_values().items():
                setattr(cls, field, value)
        cls.name = name
        _MODELS[name] = cls
        return cls

    return wrap


def _import_builtin() -> None:
    """Import the module of every built-in family once (importing registers it), whichever module came first."""
    global _builtin_imported
    if not _builtin_imported:
        _builtin_imported = True
        for module in dict.fromkeys(info.module for info in BUILTIN.values()):
            importlib.import_module(module)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _import_builtin()
    return sorted(_MODELS)


def get_model_class(name: str) -> type:
    _import_builtin()
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}; valid names: {', '.join(list_models())}") from None


def model_config_union() -> Any:
    """Every registered config class as one pydantic discriminated union on ``model_name``.

    A field typed with it validates a dict (``{"model_name": "vae", ...}``) into the right config class,
    and renders as a form per model in Prefect's UI.
    """
    from typing import Annotated, Union

    from pydantic import Field

    classes = tuple(_MODELS[name].config_class for name in list_models())
    return Annotated[Union[classes], Field(discriminator="model_name")]  # type: ignore[valid-type]


def get_config_class(name: str) -> type:
    return get_model_class(name).config_class


def make_config(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """Build and validate the config of model ``name`` from keyword overrides.

    Raises ConfigError naming the offending field when a value is out of range.
    """
    config_class = get_config_class(name)
    values = {k: v for k, v in (overrides or {}).items() if v is not None}
    values["model_name"] = name
    try:
        return config_class(**values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, prefix=name)) from None


def config_from_dict(data: Mapping[str, Any]) -> Any:
    """Rebuild a config from its ``model_dump()`` (as stored in checkpoints and MLflow)."""
    if "model_name" not in data:
        raise ConfigError("config has no model_name; cannot tell which model it belongs to")
    return make_config(data["model_name"], dict(data))


def get_model(name: str, config: Any | None = None, **overrides: Any):
    """Build model ``name`` from its config (default config when None), on CPU in float32."""
    cls = get_model_class(name)
    if config is None:
        config = make_config(name, overrides)
    elif overrides:
        # Changing a config is genlib.spec.resolve_spec's job (the one place where settings are merged).
        raise ConfigError(f"get_model({name!r}): pass a config or field values, not both")
    if config.model_name != name:
        raise ConfigError(f"config is for {config.model_name!r}, not {name!r}")
    return cls(config)


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per pydantic error, joined with '; ': ``field: message (got value)``."""
    parts = []
    for e in err.errors():
        if not e["loc"]:  # a check of the whole model: its message names the field, its input is everything
            parts.append(str(e["msg"]).removeprefix("Value error, "))
            continue
        field = ".".join(str(p) for p in e["loc"])
        parts.append(f"{field}: {e['msg']} (got {e.get('input')!r})")
    head = f"invalid {prefix} config: " if prefix else "invalid value: "
    return head + "; ".join(parts)
