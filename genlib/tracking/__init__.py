"""Tracking and registry on MLflow: the training callback, model packaging, gates and aliases.

The only genlib package that imports mlflow (lazily where it can, so importing the callback is cheap).
"""

from genlib.tracking.errors import GateFailedError, RegistryError, TrackingUnavailableError
from genlib.tracking.store import (
    TrackingTarget,
    check_tracking,
    configure_tracking,
    ensure_experiment,
    experiment_name,
    project_mlflow_dir,
    resolve_tracking,
    store_identity,
)

__all__ = [
    "GateFailedError",
    "MLflowCallback",
    "RegistryError",
    "TrackingTarget",
    "TrackingUnavailableError",
    "check_tracking",
    "configure_tracking",
    "ensure_experiment",
    "experiment_name",
    "load_genlib_model",
    "log_genlib_model",
    "project_mlflow_dir",
    "resolve_tracking",
    "store_identity",
    "tracked_run",
    "nested_under",
]


def __getattr__(name: str):
    # Lazy: these import mlflow and torch-heavy modules.
    if name == "MLflowCallback":
        from genlib.tracking.callback import MLflowCallback

        return MLflowCallback
    if name in ("tracked_run", "nested_under"):
        from genlib.tracking import runs

        return getattr(runs, name)
    if name in ("load_genlib_model", "log_genlib_model"):
        from genlib.tracking import pyfunc

        return getattr(pyfunc, name)
    raise AttributeError(f"module 'genlib.tracking' has no attribute {name!r}")
