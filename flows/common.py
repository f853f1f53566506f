"""Pieces every flow shares: tracking set-up, data loading by parameters, devices and the task cache policy."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from typing import Any, TypeVar

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext
from pydantic import BaseModel

from flows.params import DataParams

# Bump to invalidate every cached task result (e.g. after a change in what tasks log).
CACHE_VERSION = "1"

_data_lock = threading.Lock()
_data_memo: dict[DataParams, Any] = {}


def setup_tracking(check: bool = True) -> str:
    """Point mlflow at the configured store (checked, failing fast with the URI named). Returns the URI."""
    from genlib.tracking import configure_tracking

    return configure_tracking(check=check).uri


def load_data(params: DataParams, expected_digest: str | None = None) -> Any:
    """The DataSplits for ``params``, memoised per process (flows of one pipeline share one copy).

    Raises DataError when ``expected_digest`` is given and differs: a worker must train on the very
    data the pipeline prepared.
    """
    from genlib.data import load_dataset
    from genlib.errors import DataError

    with _data_lock:
        data = _data_memo.get(params)
        if data is None:
            data = load_dataset(params.dataset, root=params.data_root, seed=params.seed)
            if any(n is not None for n in (params.n_train, params.n_val, params.n_test)):
                data = data.subset(params.n_train, params.n_val, params.n_test, seed=params.seed)
            _data_memo[params] = data
    if expected_digest is not None and data.digest != expected_digest:
        raise DataError(f"{params.dataset}: loaded data has digest {data.digest[:12]}, the pipeline prepared "
                        f"{expected_digest[:12]}; the data differ between machines")
    return data


_features_memo: dict[tuple[str, int, str], Any] = {}


def feature_classifier(data: Any, epochs: int, device: Any) -> Any:
    """genlib's feature space for ``data`` (the feature CNN with labels, the contrastive encoder without;
    disk-cached by digest), kept per process across evaluations."""
    from genlib.evaluation.features import get_feature_space

    key = (data.digest, int(epochs), str(device))
    with _data_lock:
        if key not in _features_memo:
            _features_memo[key] = get_feature_space(data, device=device, epochs=epochs)
        return _features_memo[key]


def resolve_device(device: str) -> Any:
    """:func:`genlib.training.resolve_device`, where "auto" has its one meaning (``$GENLIB_DEVICE`` when set,
    else CUDA when present, else the CPU); a flow run that is its own entry point (a deployment's) calls it."""
    from genlib.training import resolve_device as _resolve

    return _resolve(device)


def dump(value: Any) -> Any:
    """JSON-able form of task inputs for cache keys: pydantic models by ``model_dump``."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): dump(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [dump(v) for v in value]
    return value


def digest_of(payload: Any) -> str:
    return hashlib.sha256(json.dumps(dump(payload), sort_keys=True, default=str).encode()).hexdigest()


@dataclasses.dataclass
class ConfigAndStore(CachePolicy):
    """Cache key = task name + the inputs' ``model_dump()`` (configs, data digest) + the tracking store.

    The store part is the tracking URI plus the store's creation time (``store_identity``), so a
    result holding a run id is reused only against the store that holds that run: pointing at another
    server, or deleting ``mlflow/mlflow.db``, changes every key. ``ignore`` names inputs left out
    (e.g. a device string: the same config trained on CPU or GPU is the same model).
    """

    ignore: tuple[str, ...] = ()

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        from genlib.tracking import store_identity

        payload = {
            "version": CACHE_VERSION,
            "task": task_ctx.task.name,
            "inputs": {k: dump(v) for k, v in sorted(inputs.items()) if k not in self.ignore},
            "store": store_identity(),
        }
        return digest_of(payload)


@dataclasses.dataclass
class SpecAndStore(CachePolicy):
    """Cache key of a training task: task name + ``spec.cache_key(digest)`` (the RunSpec's canonical JSON of
    what decides the weights, plus the data digest) + the tracking store (as in ConfigAndStore)."""

    spec: str = "spec"
    digest: str = "digest"

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        from genlib.tracking import store_identity

        key = inputs[self.spec].cache_key(inputs[self.digest])
        return digest_of({"version": CACHE_VERSION, "task": task_ctx.task.name, "spec": key,
                          "store": store_identity()})


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def run_is_usable(run_id: str, needs_model: bool = True) -> bool:
    """Whether a (possibly cached) run still exists, finished (with its model), in the current store."""
    from genlib.tracking.runs import run_is_usable as usable

    return usable(run_id, needs_model=needs_model)


R = TypeVar("R", bound=BaseModel)


def run_or_reuse(task_: Task[..., R], *args: Any, needs_model: bool = False, label: str = "") -> R:
    """Run ``task_`` (a task returning a result with ``run_id`` and ``cached``) or take its cached result;
    a cached result whose MLflow run is gone from the store (deleted, unfinished, without its model) is
    computed again. The one place that decision is made."""
    if label:
        task_ = task_.with_options(task_run_name=f"{task_.name}-{label}")
    state = task_(*args, return_state=True)
    result, cached = state.result(), state.name == "Cached"
    if cached and not run_is_usable(result.run_id, needs_model=needs_model):
        get_run_logger().warning("cached run %s of %s is gone from the tracking store; running it again",
                                 result.run_id, task_.name)
        result, cached = task_.with_options(refresh_cache=True)(*args), False
    return result.model_copy(update={"cached": cached})


def track(kind: str, **kwargs: Any) -> Any:
    """:func:`genlib.tracking.runs.tracked_run` with this Prefect flow run's id among the standard tags."""
    from prefect.runtime import flow_run

    from genlib.tracking.runs import tracked_run

    return tracked_run(kind, prefect_flow_run_id=str(flow_run.id or "") or None, **kwargs)  # type: ignore[arg-type]
