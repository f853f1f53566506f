"""Links into the MLflow UI that open on its model-training workflow: an experiment's runs, a run, the registry.

MLflow 3.17's UI shows an experiment in its GenAI workflow (traces, evaluation sidebar) unless the page's
URL says ``workflowType=machine_learning`` or the browser chose model training before. The registered
models page rewrites its URL without that parameter, so its sidebar follows the browser's last choice;
the page itself lists the same models either way.

No mlflow import: ``genlib stack`` runs MLflow as a server process and prints these links too.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlparse

from genlib.tracking.store import EXPERIMENT_PREFIX, resolve_tracking

MODEL_TRAINING = "workflowType=machine_learning"
GENLIB_UI_PORT = 5000  # `genlib ui`'s default MLflow port (it takes another when this one is busy)


def runs_view(base: str, experiment_id: str) -> str:
    """An experiment's runs table in the model-training workflow."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{MODEL_TRAINING}"


def run_page(base: str, experiment_id: str, run_id: str) -> str:
    """One run's page in the model-training workflow."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING}"


def ui_url(experiment_id: str, run_id: str | None = None, uri: str | None = None) -> str | None:
    """The MLflow UI page of an experiment (or one of its runs) on an HTTP tracking server, opened on the
    model-training view (MLflow 3.17 otherwise opens on the workflow last chosen in the browser); None
    for stores without a UI of their own (sqlite, files)."""
    uri = uri or resolve_tracking().uri
    if urlparse(uri).scheme not in ("http", "https"):
        return None
    return run_page(uri, experiment_id, run_id) if run_id else runs_view(uri, experiment_id)


def experiments_page(base: str) -> str:
    """The list of experiments in the model-training workflow."""
    return f"{base.rstrip('/')}/#/experiments?{MODEL_TRAINING}"


def models_page(base: str) -> str:
    """The registered models (the page drops any workflow parameter, so none is added)."""
    return f"{base.rstrip('/')}/#/models"


def find_experiments(base: str, credentials: tuple[str, str] | None = None, timeout: float = 5.0) -> dict[str, str]:
    """Name -> id of the genlib experiments a tracking server holds, most recently updated first, through
    its REST API; ``{}`` when it does not answer. ``credentials`` (basic auth) default to
    ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``."""
    if credentials is None and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        credentials = (os.environ.get("MLFLOW_TRACKING_USERNAME", ""), os.environ["MLFLOW_TRACKING_PASSWORD"])
    body = json.dumps({"max_results": 50, "filter": f"name LIKE '{EXPERIMENT_PREFIX}%'",
                       "order_by": ["last_update_time DESC"]}).encode()
    request = urllib.request.Request(f"{base.rstrip('/')}/api/2.0/mlflow/experiments/search", data=body,
                                     headers={"Content-Type": "application/json"})
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            found = json.load(response).get("experiments", [])
    except (OSError, ValueError):  # no server, refused credentials, or not MLflow: links without ids
        return {}
    return {e["name"]: e["experiment_id"] for e in found if e.get("lifecycle_stage", "active") == "active"}


def dashboard_lines(base: str, experiments: Mapping[str, str], indent: str = "  ") -> list[str]:
    """The links every command prints: each experiment's runs view (the experiments list while there is
    none yet) and the registered models."""
    lines = [f"{indent}runs of {name}: {runs_view(base, eid)}" for name, eid in experiments.items()]
    if not lines:
        lines = [f"{indent}experiments:   {experiments_page(base)}  (genlib-<dataset> appears after a pipeline run)"]
    lines.append(f"{indent}registered models: {models_page(base)}")
    return lines
