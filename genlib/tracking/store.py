"""Where runs and models are tracked: ``$MLFLOW_TRACKING_URI``, else an embedded sqlite store in ``mlflow/``.

The embedded store is ``<project>/mlflow/mlflow.db`` with artifacts under ``<project>/mlflow/artifacts``,
where ``<project>`` is the nearest folder at or above the working directory holding ``pyproject.toml``
and a ``genlib`` package (or the checkout genlib runs from); ``$GENLIB_MLFLOW_DIR`` overrides it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from genlib.tracking.errors import TrackingUnavailableError

logger = logging.getLogger(__name__)

EXPERIMENT_PREFIX = "genlib-"
# MLflow retries a failing HTTP request with back-off for minutes by default; a pipeline should
# fail within seconds when its server goes away, so unless the user chose otherwise keep it short.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
                  # MLflow prints "View run ... at: <url>" on stdout after each run against a server;
                  # genlib's stdout carries its summaries and JSON.
                  "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
                  # Reading a report's tables back draws one progress bar per artifact on stderr.
                  "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


@dataclasses.dataclass(frozen=True)
class TrackingTarget:
    """A resolved tracking store: ``uri`` for runs and the registry; ``artifact_root`` for local (sqlite)
    stores, whose artifacts genlib places itself (a server places them for remote stores)."""

    uri: str
    artifact_root: Path | None = None

    @property
    def local(self) -> bool:
        return self.artifact_root is not None


def project_mlflow_dir() -> Path:
    """The folder of the embedded store (see the module docstring)."""
    env = os.environ.get("GENLIB_MLFLOW_DIR")
    if env:
        return Path(env).expanduser().resolve()
    cwd = Path.cwd().resolve()
    for base in (cwd, *cwd.parents):
        if (base / "pyproject.toml").is_file() and (base / "genlib").is_dir():
            return base / "mlflow"
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "mlflow"
    return cwd / "mlflow"


def resolve_tracking(uri: str | None = None) -> TrackingTarget:
    """The tracking store to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else the embedded sqlite store.

    Any sqlite store keeps its artifacts in an ``artifacts`` folder beside the database (MLflow's own
    default would be ``./mlruns`` under whatever the working directory is).
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    if not uri:
        folder = project_mlflow_dir()
        uri = f"sqlite:///{folder / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        db = Path(uri.removeprefix("sqlite:///"))
        return TrackingTarget(uri=uri, artifact_root=db.resolve().parent / "artifacts")
    return TrackingTarget(uri=uri)


def configure_tracking(uri: str | None = None, *, check: bool = True, timeout: float = 5.0) -> TrackingTarget:
    """Resolve the store, check it answers (within ``timeout`` seconds), and point mlflow at it.

    Sets ``MLFLOW_TRACKING_URI`` in the environment too, so subprocesses (Prefect task runs, workers
    started from here) track to the same place. Raises TrackingUnavailableError naming the URI.
    """
    import mlflow

    target = resolve_tracking(uri)
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if check:
        check_tracking(target, timeout=timeout)
    os.environ["MLFLOW_TRACKING_URI"] = target.uri
    mlflow.set_tracking_uri(target.uri)
    mlflow.set_registry_uri(target.uri)
    return target


def check_tracking(target: TrackingTarget | str, timeout: float = 5.0) -> None:
    """Fail fast, with the URI in the message, when the tracking store cannot be used.

    HTTP stores are asked for ``/health`` once, without MLflow's retries; sqlite stores need a
    writable folder. Other schemes (file, databricks, ...) are left to MLflow.
    """
    if isinstance(target, str):
        target = resolve_tracking(target)
    uri = target.uri
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only
                status = response.status
        except urllib.error.HTTPError as err:
            status = err.code
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingUnavailableError(f"MLflow tracking server {uri} is unreachable ({reason})") from None
        if status >= 500:
            raise TrackingUnavailableError(f"MLflow tracking server {uri} answered HTTP {status} to /health")
    elif scheme == "sqlite":
        path = uri.removeprefix("sqlite:///")
        if path and path != ":memory:":
            folder = Path(path).parent  # sqlite:////abs/x.db -> /abs ; sqlite:///rel/x.db -> rel
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise TrackingUnavailableError(f"MLflow store {uri}: cannot create {folder} ({err.strerror})") from None
            if not os.access(folder, os.W_OK):
                raise TrackingUnavailableError(f"MLflow store {uri}: folder {folder} is not writable")
    if target.artifact_root is not None:
        target.artifact_root.mkdir(parents=True, exist_ok=True)


def experiment_name(dataset: str) -> str:
    """One experiment per data set: ``genlib-<dataset>``."""
    return f"{EXPERIMENT_PREFIX}{Path(dataset).name if os.sep in dataset else dataset}"


def ensure_experiment(dataset: str, target: TrackingTarget | None = None) -> str:
    """Id of the data set's experiment, created on first use (with its artifacts in the embedded folder).

    The experiment is tagged as model development, so the MLflow UI opens it on its runs rather than on
    the GenAI (traces) overview.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from genlib.tracking import tags as T

    client = MlflowClient()
    name = experiment_name(dataset)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if (exp.tags or {}).get(T.MLFLOW_EXPERIMENT_KIND) != T.CUSTOM_MODEL_DEVELOPMENT:
            client.set_experiment_tag(exp.experiment_id, T.MLFLOW_EXPERIMENT_KIND, T.CUSTOM_MODEL_DEVELOPMENT)
        return exp.experiment_id
    location = None
    if target is not None and target.artifact_root is not None:
        location = (target.artifact_root / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags={
            T.DATASET: dataset, T.MLFLOW_EXPERIMENT_KIND: T.CUSTOM_MODEL_DEVELOPMENT})
    except MlflowException:  # created meanwhile by a concurrent run
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def store_identity() -> str:
    """A string that changes when the tracking store is replaced: the URI plus the creation time of the
    store's ``Default`` experiment (id 0, made when the store was initialised).

    Part of every task cache key, so a run id cached against a deleted or different store is never reused.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        created = MlflowClient().get_experiment("0").creation_time
    except MlflowException:  # stores without a Default experiment
        created = None
    return f"{mlflow.get_tracking_uri()}|{created}"
