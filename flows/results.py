"""How the flows' task results are persisted (for the task cache and retries): JSON, never pickles.

Prefect's default result serializer is cloudpickle, and a cache hit unpickles whatever file sits in the
result storage folder. Every persisted genlib task returns a pydantic model (or a plain JSON value), so
results are written as ``{"model": <class name>, "data": <model_dump(mode="json")>}`` and read back with
``model_validate`` of a class from :data:`RESULT_MODELS` only: a result file can at worst fail validation,
never run code.
"""

from __future__ import annotations

import json
from typing import Any

from prefect.serializers import Serializer
from pydantic import BaseModel, Field

SERIALIZER_TYPE = "genlib-json"


def _result_models() -> dict[str, type[BaseModel]]:
    from flows import params

    return {cls.__name__: cls for cls in params.RESULT_MODELS}


class PydanticJSONSerializer(Serializer):
    """Task results as JSON: pydantic models by class name (only flows.params' result models load back),
    plain JSON values (str, numbers, lists, dicts) as they are, errors of failed runs as their type and message."""

    type: str = Field(default=SERIALIZER_TYPE, frozen=True)

    def dumps(self, obj: Any) -> bytes:
        if isinstance(obj, BaseException):  # a failed run's state: its error, as text
            payload = {"error": type(obj).__name__, "message": str(obj)}
        elif isinstance(obj, BaseModel):
            name = type(obj).__name__
            if name not in _result_models():
                raise TypeError(f"{name} is not a flows result model; add it to flows.params.RESULT_MODELS")
            payload = {"model": name, "data": obj.model_dump(mode="json")}
        else:
            payload = {"model": None, "data": obj}
        return json.dumps(payload, sort_keys=True).encode()

    def loads(self, blob: bytes) -> Any:
        payload = json.loads(blob)
        if "error" in payload:
            return FailedResultError(f"{payload['error']}: {payload['message']}")
        name = payload.get("model")
        if name is None:
            return payload["data"]
        cls = _result_models().get(name)
        if cls is None:
            raise ValueError(f"cached result of unknown type {name!r}")
        return cls.model_validate(payload["data"])


class FailedResultError(Exception):
    """A failed run's persisted error, read back (only its type name and message are kept)."""


RESULTS = PydanticJSONSerializer()
