"""What every command shares: the user-error exit code, validation into one-line ConfigErrors, JSON output."""

from __future__ import annotations

import math
from typing import Any

from genlib.errors import ConfigError

EXIT_USER_ERROR = 2


def validated(cls: type, **values: Any) -> Any:
    """``cls(**values)`` for a pydantic model; a validation error becomes one ConfigError line."""
    from pydantic import ValidationError

    from genlib.models.registry import format_validation_error

    try:
        return cls(**values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err).replace("invalid value: ", "invalid option: ")
                          .replace("Value error, ", "")) from None


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None and tuples as lists, so ``json.dumps`` writes strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def parse_labels(text: str | None) -> list[int] | None:
    """``--labels 0,1,2`` as integers (None when not given)."""
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--labels {text!r}: expected comma-separated integers such as 0,1,2") from None
