"""``genlib stack up | down`` (make up / make down): the bind rule, the pull step read at run time, and (slow)
the real stack: servers, cpu and gpu workers, the deployments, a pipeline run started through the Prefect
API as the schedule starts it, up/down twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

pytest.register_assert_rewrite("tests.services")
from bench.soak import stack_env  # one definition, shared with the soak
from tests.services import ROOT, free_port

BIN = Path(sys.executable).parent
# A pipeline run small enough for a shared 2-core machine: one family, a digits subset, tiny evaluation.
TINY_EVAL = {"fid_samples": 100, "classifier_epochs": 4, "is_splits": 2, "iwae_k": 4, "iwae_chunk": 4,
             "elbo_samples": 1, "likelihood_images": 50, "ais_chains": 4, "ais_betas": 20}
TINY_PIPELINE = {"data": {"dataset": "digits", "n_train": 600, "n_val": 100, "n_test": 200}, "models": ["ae"],
                 "profile": "quick", "dispatch": "auto", "suite": False, "train_overrides": {"epochs": 2},
                 "eval_overrides": TINY_EVAL}


def genlib(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "genlib"), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


# --- fast ---------------------------------------------------------------------------------------------


def test_binding_beyond_loopback_needs_both_credentials(tmp_path, monkeypatch):
    from genlib.errors import ConfigError
    from genlib.ops.stack import Auth, auth_from_env, check_bind

    check_bind("127.0.0.1", Auth())
    check_bind("localhost", Auth())
    with pytest.raises(ConfigError, match="MLFLOW_AUTH_ADMIN_PASSWORD .*PREFECT_SERVER_API_AUTH_STRING"):
        check_bind("0.0.0.0", Auth())
    with pytest.raises(ConfigError, match="PREFECT_SERVER_API_AUTH_STRING"):
        check_bind("10.0.0.5", Auth(mlflow_password="x" * 12))
    secret = tmp_path / "pw"
    secret.write_text("a-long-password-from-a-file\n")
    auth = auth_from_env({"MLFLOW_AUTH_ADMIN_PASSWORD_FILE": str(secret), "PREFECT_SERVER_API_AUTH_STRING": "u:p"})
    assert auth.mlflow_password == "a-long-password-from-a-file" and auth.complete
    check_bind("0.0.0.0", auth)
    with pytest.raises(ConfigError, match="12 characters"):
        auth_from_env({"MLFLOW_AUTH_ADMIN_PASSWORD": "short"})
    with pytest.raises(ConfigError, match="user:password"):
        auth_from_env({"PREFECT_SERVER_API_AUTH_STRING": "nocolon"})


def test_stack_up_on_a_public_interface_without_auth_is_one_line_exit_2(tmp_path):
    done = genlib(["stack", "up", "--host", "0.0.0.0", "--prefect-port", str(free_port()),
                   "--mlflow-port", str(free_port())], stack_env(tmp_path), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: refusing to bind 0.0.0.0 without authentication")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "genlib" / "stack" / "stack.json").exists()  # nothing started


def test_serve_sh_refuses_a_public_interface_without_auth(tmp_path):
    env = stack_env(tmp_path, MLFLOW_HOST="0.0.0.0", MLFLOW_BIN="/bin/false")
    done = subprocess.run(["bash", str(ROOT / "mlflow" / "serve.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "refusing to serve MLflow on 0.0.0.0 without authentication" in done.stderr


def test_client_env_passes_the_credentials():
    from genlib.ops.stack import Auth, StackSettings, client_env

    settings = StackSettings(project=ROOT, host="0.0.0.0", prefect_port=4300, mlflow_port=5300)
    env = client_env(settings, Auth(mlflow_password="p" * 12, prefect_auth_string="genlib:s"), base={})
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4300/api" and env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5300"
    assert env["PREFECT_API_AUTH_STRING"] == "genlib:s"
    assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == ("admin", "p" * 12)
    assert env["GENLIB_PROJECT_DIR"] == str(ROOT)


def test_pull_step_reads_the_workers_project_dir_at_run_time(tmp_path):
    """prefect.yaml stores no machine's path; the step changes into the running process's GENLIB_PROJECT_DIR."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    text = json.dumps(spec["pull"])
    assert "{{" not in text and str(ROOT) not in text
    ((step, inputs),) = spec["pull"][0].items()
    other = tmp_path / "checkout"
    (other / "flows").mkdir(parents=True)
    code = (f"import os; from importlib import import_module; m, f = {step!r}.rsplit('.', 1); "
            f"print(getattr(import_module(m), f)(**{inputs!r})['directory'], os.getcwd())")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "GENLIB_PROJECT_DIR": str(other)},
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(other.resolve())] * 2
    missing = subprocess.run([sys.executable, "-c", code], env={k: v for k, v in os.environ.items()
                                                                if k != "GENLIB_PROJECT_DIR"},
                             capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode != 0 and "GENLIB_PROJECT_DIR is not set" in missing.stderr


def test_gpu_pool_leaves_the_device_to_the_worker():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pools = spec["definitions"]["work_pools"]
    assert pools["cpu"]["job_variables"]["env"]["GENLIB_DEVICE"] == "cpu"
    assert "GENLIB_DEVICE" not in json.dumps(pools["gpu"])  # device auto: CUDA when present, else the CPU


def test_down_without_a_stack_says_so(tmp_path):
    done = genlib(["stack", "down"], stack_env(tmp_path), timeout=120)
    assert done.returncode == 0 and "not running" in done.stdout


# --- slow: the real stack -------------------------------------------------------------------------------


def _trigger_like_the_schedule(api: str, parameters: dict, timeout: float = 600) -> tuple[object, list]:
    """Create a Scheduled flow run of pipeline/pipeline due now (what Prefect's scheduler does for a cron
    slot), wait until it is final; returns (the run, every flow run on the server)."""
    os.environ["PREFECT_API_URL"] = api
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    # The settings too, not only the environment: Prefect read its settings at import, and in a session
    # with tests.services (test_flows) a harness server's URL is already in them.
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("pipeline/pipeline")
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"params": parameters},
            state=Scheduled(scheduled_time=datetime.now(timezone.utc)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = client.read_flow_run(run.id)
            if run.state is not None and run.state.is_final():
                break
            time.sleep(2)
        return run, client.read_flow_runs()


@pytest.mark.slow
def test_stack_up_twice_runs_the_scheduled_pipeline_on_its_workers_and_down_twice(tmp_path):
    from mlflow import MlflowClient

    from genlib.ops.processes import alive

    pp, mp = free_port(), free_port()
    env = stack_env(tmp_path)
    ports = ["--prefect-port", str(pp), "--mlflow-port", str(mp)]
    t0 = time.monotonic()
    first = genlib(["stack", "up", *ports], env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "genlib stack started" in first.stdout
    assert f"http://127.0.0.1:{pp}" in first.stdout and f"http://127.0.0.1:{mp}" in first.stdout
    up_seconds = time.monotonic() - t0
    try:
        state = load_state_for(tmp_path)
        assert [p["name"] for p in state["processes"]] == ["prefect-server", "mlflow-server", "worker-cpu",
                                                            "worker-gpu"]
        t1 = time.monotonic()
        second = genlib(["stack", "up", *ports], env)
        assert second.returncode == 0 and "already running" in second.stdout
        assert time.monotonic() - t1 < 30 and load_state_for(tmp_path)["processes"] == state["processes"]

        api = f"http://127.0.0.1:{pp}/api"
        run, flow_runs = _trigger_like_the_schedule(api, TINY_PIPELINE)
        logs = "\n".join((tmp_path / "genlib" / "stack" / f"worker-{p}.log").read_text()[-1500:] for p in ("cpu", "gpu"))
        assert run.state.type.value == "COMPLETED", logs
        assert run.work_pool_name == "cpu"
        trained = [r for r in flow_runs if r.name == "train-ae" and r.parent_task_run_id is not None]
        assert trained and trained[0].work_pool_name == "gpu" and trained[0].state.type.value == "COMPLETED"
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{mp}", registry_uri=f"http://127.0.0.1:{mp}")
        versions = client.search_model_versions("name='genlib-ae-digits'")
        assert len(versions) == 1 and client.get_run(versions[0].run_id).info.status == "FINISHED"
        assert json.loads(versions[0].tags["genlib.gates"])["status"] in ("passed", "failed")
    finally:
        down = genlib(["stack", "down"], env)
    assert down.returncode == 0 and "genlib stack stopped" in down.stdout
    assert not any(alive(p) for p in state["processes"])
    again = genlib(["stack", "down"], env)
    assert again.returncode == 0 and "not running" in again.stdout

    third = genlib(["stack", "up", *ports], env)  # up and down work a second time
    try:
        assert third.returncode == 0 and "genlib stack started" in third.stdout, third.stderr[-3000:]
    finally:
        last = genlib(["stack", "down"], env)
    assert last.returncode == 0 and "genlib stack stopped" in last.stdout
    print(f"stack up took {up_seconds:.0f} s")


def load_state_for(folder: Path) -> dict:
    return json.loads((folder / "genlib" / "stack" / "stack.json").read_text())


# docs/deploy.md's one-machine block runs as written, without the venv on PATH, in tests/test_docs.py.
