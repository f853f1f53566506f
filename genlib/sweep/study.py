"""The Optuna side of a sweep: where the study lives, its sampler and pruner, the space as distributions,
the preset as trial 0, and picking up after a killed sweep.

Storage (:func:`resolve_storage`): ``$GENLIB_OPTUNA_STORAGE`` when set (e.g. a PostgreSQL database that
every worker reaches); else an SQLite file ``optuna.db`` beside the tracking store's database (the embedded
``mlflow/mlflow.db``, or the stack server's ``$MLFLOW_BACKEND_STORE_URI`` when that is SQLite); else beside
the embedded store's folder. Any number of processes on any hosts share a study through it.

Resuming: the driver records a heartbeat for each trial it runs and its host and PID on the trial. A trial
left RUNNING by a driver that is gone (its PID dead on this host, or no heartbeat for ``GRACE_SECONDS``) is
marked FAIL and re-queued with the same parameters (Optuna's RetryHeartbeatStaleTrialCallback), so the next sweep
runs it again first.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from genlib.errors import ConfigError, UnknownNameError
from genlib.sweep.spaces import Choice, FloatRange, SearchSpace
from genlib.sweep.refs import PrunerSettings, TrialRef

STORAGE_ENV = "GENLIB_OPTUNA_STORAGE"
STORAGE_FILE = "optuna.db"
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60
# Study user attributes: what the study was made for (a later command must match) and its MLflow parent run.
ATTR_FAMILY, ATTR_DATASET, ATTR_METRIC, ATTR_DIRECTION = "family", "dataset", "metric", "direction"
ATTR_PARENT_RUN = "mlflow_parent_run_id"
# Trial user attributes.
ATTR_HOST, ATTR_PID, ATTR_PRESET, ATTR_EPOCHS = "host", "pid", "preset", "epochs"

optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial would drown the flow's log
# Heartbeats and the retry callback are marked experimental: the warning would print in every process.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# The driver asks and tells itself (not Study.optimize), and records the heartbeats itself (Heartbeat below).
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def resolve_storage(tracking_uri: str | None = None) -> str:
    """The Optuna storage URL (module docstring); ``tracking_uri`` defaults to the resolved tracking store."""
    from genlib.tracking.store import project_mlflow_dir, resolve_tracking

    explicit = os.environ.get(STORAGE_ENV, "").strip()
    if explicit:
        return explicit
    candidates = [resolve_tracking(tracking_uri).uri, os.environ.get("MLFLOW_BACKEND_STORE_URI", "")]
    for uri in candidates:
        if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
            return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve().parent / STORAGE_FILE}"
    return f"sqlite:///{project_mlflow_dir() / STORAGE_FILE}"


def redact(url: str) -> str:
    """``url`` without its password (for logs, tags and the parameters of remote runs)."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@", 1)
    return url


def shareable(url: str) -> str | None:
    """The URL to hand to remote training runs: itself when it holds no password (None: each worker
    resolves its own, from ``$GENLIB_OPTUNA_STORAGE``)."""
    return url if urlparse(url).password is None else None


def open_storage(url: str) -> RDBStorage:
    """The RDB storage at ``url`` with heartbeats and the retry of interrupted trials."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # SQLite: wait for the lock rather than fail while another process writes.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))


def study_exists(name: str, url: str) -> bool:
    """Whether study ``name`` is in the storage at ``url``; an SQLite file that does not exist is not created."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return False
    return name in optuna.get_all_study_names(storage=open_storage(url))


def make_pruner(settings: PrunerSettings) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=settings.n_startup_trials,
                                       n_warmup_steps=settings.n_warmup_steps)


def open_study(name: str, storage: RDBStorage, space: SearchSpace, dataset: str,
               pruner: PrunerSettings) -> optuna.Study:
    """Create study ``name`` or load it; a study made for another family, data set or metric is refused."""
    sampler = optuna.samplers.TPESampler(constant_liar=True)  # parallel trials: pending ones count as bad
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                pruner=make_pruner(pruner), direction=space.direction, load_if_exists=True)
    expected = {ATTR_FAMILY: space.family, ATTR_DATASET: dataset, ATTR_METRIC: space.metric,
                ATTR_DIRECTION: space.direction}
    attrs = study.user_attrs
    for key, value in expected.items():
        if key in attrs and attrs[key] != value:
            raise ConfigError(f"study {name!r} was made for {key} {attrs[key]!r}, not {value!r}; "
                              "choose another --study")
        if key not in attrs:
            study.set_user_attr(key, value)
    return study


def load_trial(ref: TrialRef) -> optuna.Trial:
    """Trial ``ref`` of its study, for reporting from the training's process (any host)."""
    from optuna.trial import Trial

    url = ref.storage or resolve_storage()
    study = optuna.load_study(study_name=ref.study, storage=open_storage(url), pruner=make_pruner(ref.pruner))
    return Trial(study, ref.trial_id)


def trial_id(storage: RDBStorage, study: str, number: int) -> int:
    """The storage's id of trial ``number`` of ``study`` (what a remote training reports to)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study), number)


def pruned_at(ref: TrialRef) -> int | None:
    """The epoch at which trial ``ref``'s training was pruned (None: it was not), read from the storage."""
    from genlib.sweep.refs import PRUNED_AT

    storage = open_storage(ref.storage or resolve_storage())
    value = storage.get_trial(ref.trial_id).user_attrs.get(PRUNED_AT)
    return int(value) if value is not None else None


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Optuna distributions of the space; choices are stored as JSON text (Optuna takes scalars only)."""
    out: dict[str, BaseDistribution] = {}
    for field, p in space.params.items():
        if isinstance(p, FloatRange):
            out[field] = FloatDistribution(p.low, p.high, log=p.log)
        elif isinstance(p, Choice):
            out[field] = CategoricalDistribution([_encode(c) for c in p.choices])
        else:
            out[field] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
    return out


def _encode(value: Any) -> Any:
    return json.dumps(list(value)) if isinstance(value, (tuple, list)) else value


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("["):
        return tuple(json.loads(value))
    return value


def trial_overrides(params: Mapping[str, Any], pins: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The run-spec overrides of a trial: the ``--set`` pins plus the trial's sampled ``section.field`` values."""
    out = {section: dict(values) for section, values in pins.items()}
    for field, value in params.items():
        section, name = field.split(".", 1)
        out.setdefault(section, {})[name] = _decode(value)
    return out


def preset_params(space: SearchSpace, spec: Any) -> dict[str, Any]:
    """The preset's value of each field of the space (``spec``: the preset's RunSpec, pins applied) that the
    space contains; fields whose preset value lies outside the space are left to the sampler."""
    out = {}
    for field, p in space.params.items():
        section, name = field.split(".", 1)
        value = getattr(getattr(spec, section), name)
        if isinstance(p, Choice):
            if value in p.choices:
                out[field] = _encode(value)
        elif p.low <= value <= p.high:
            out[field] = value
    return out


def enqueue_preset(study: optuna.Study, space: SearchSpace, spec: Any) -> bool:
    """Queue the preset as the study's first trial (only in a study with no trials yet). True when queued."""
    if study.get_trials(deepcopy=False):
        return False
    study.enqueue_trial(preset_params(space, spec), user_attrs={ATTR_PRESET: True})
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Mark FAIL (and re-queue) the trials a gone driver left RUNNING; returns their numbers."""
    host = socket.gethostname()
    recovered = []
    retry = RetryHeartbeatStaleTrialCallback(max_retry=3)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get(ATTR_HOST) == host and ATTR_PID in attrs and not _alive(int(attrs[ATTR_PID])):
            study.tell(trial.number, state=TrialState.FAIL)
            retry(study, study.get_trials(deepcopy=True)[trial.number])
            recovered.append(trial.number)
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    fail_stale_trials(study)  # other hosts' drivers: no heartbeat for GRACE_SECONDS
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted(recovered + list(before - after))


def mark_started(trial: optuna.Trial, epochs: int) -> None:
    """Record which driver runs ``trial`` (host, PID) and its planned epochs."""
    trial.set_user_attr(ATTR_HOST, socket.gethostname())
    trial.set_user_attr(ATTR_PID, os.getpid())
    trial.set_user_attr(ATTR_EPOCHS, int(epochs))


class Heartbeat:
    """A thread that records a heartbeat for each trial in flight every ``HEARTBEAT_SECONDS``."""

    def __init__(self, storage: RDBStorage) -> None:
        self.storage, self.trials = storage, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="genlib-sweep-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def add(self, trial_id: int) -> None:
        self.trials.add(trial_id)
        self.storage.record_heartbeat(trial_id)

    def discard(self, trial_id: int) -> None:
        self.trials.discard(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            for trial_id in list(self.trials):
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # noqa: BLE001 - a missed beat is harmless; the next one tries again
                    pass


def require_study(name: str, url: str) -> None:
    """UnknownNameError (one line) when ``--resume`` names a study the storage does not hold."""
    if not study_exists(name, url):
        known = [] if not (url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists()) \
            else None
        if known is not None:
            known = optuna.get_all_study_names(storage=open_storage(url))
        raise UnknownNameError(f"no study {name!r} in {redact(url)}; studies: {', '.join(known or []) or 'none'}")
