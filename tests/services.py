"""Real services for the flow, tracking and CLI-ops tests: an MLflow tracking server on a loopback port with
a temporary sqlite store, and Prefect's test harness (a temporary API server). Both session-scoped.

Import this module before anything imports prefect: it points PREFECT_HOME and genlib's embedded MLflow
folder at a temporary directory, so no test writes into the repository's mlflow/ or the home folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = Path(tempfile.mkdtemp(prefix="genlib-services-"))
BIN = Path(sys.executable).parent

# Before prefect is imported (it reads these once): state, results and the ephemeral DB under SCRATCH.
os.environ["PREFECT_HOME"] = str(SCRATCH / "prefect-home")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ["GENLIB_MLFLOW_DIR"] = str(SCRATCH / "embedded-mlflow")
os.environ.pop("MLFLOW_TRACKING_URI", None)

# Evaluation settings small enough for seconds per model (the plumbing is under test, not the numbers).
TINY_EVAL = {
    "fid_samples": 100, "classifier_epochs": 4, "is_splits": 2, "iwae_k": 4, "iwae_chunk": 4, "elbo_samples": 1,
    "likelihood_images": 50, "ais_chains": 4, "ais_betas": 20, "latent_sizes": (2,), "suite_epochs": 1,
    "label_budgets": (20,), "seeds": (0,), "finetune_steps": 5, "augment_budgets": (20,), "n_synthetic": 20,
    "augment_steps": 5, "generator_steps": {"cvae": 5, "cgan": 5}, "pretrain_latent": 2,
    "sampling_latent_sizes": (2,), "interpolation_pairs": 10, "interpolation_steps": 4, "gvd_label_sizes": (10, 10**6),
    "gvd_seeds": (0,), "gvd_min_steps": 5, "gvd_max_steps": 5, "gvd_test_images": 100,
}
# A subset of digits that trains in a second or two per family.
SMALL_DATA = {"dataset": "digits", "n_train": 600, "n_val": 100, "n_test": 200}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process serving {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    """Terminate ``proc`` and its process group (servers started with ``start_new_session=True``)."""
    try:
        group = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    if group == proc.pid:
        os.killpg(group, signal.SIGTERM)
    else:
        proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        if group == proc.pid:
            os.killpg(group, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[str]:
    """URI of a real ``mlflow server`` (sqlite store and artifact folder in a temporary directory)."""
    folder = Path(tempfile.mkdtemp(prefix="genlib-mlflow-server-"))
    port = free_port()
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True,
        # MLflow 3's job runner (huey consumers, for GenAI scorers) is not needed and costs processes.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", timeout=180, proc=proc)
        yield uri
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """Prefect's test harness for the session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


@pytest.fixture()
def tracking(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point genlib (and mlflow) at the session's tracking server for one test."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    return mlflow_server


def closed_port_uri() -> str:
    """An http URI on a loopback port nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


def registered_version(name: str, family: str, metrics: dict[str, float]) -> str:
    """A registered version of ``name`` carrying genlib's tags, as the pipeline registers them (no model files)."""
    import uuid

    import mlflow

    from genlib.tracking import ensure_experiment
    from genlib.tracking.registry import metric_tags

    client = mlflow.MlflowClient()
    run = client.create_run(ensure_experiment(f"cli-{uuid.uuid4().hex[:6]}"))
    client.set_terminated(run.info.run_id)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, tags={"genlib.model": family})
    tags = {"genlib.model": family, "genlib.dataset": "digits", "genlib.dataset_digest": "d" * 64,
            "genlib.gates": "passed", **metric_tags(metrics)}
    return str(client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id,
                                           tags=tags).version)
