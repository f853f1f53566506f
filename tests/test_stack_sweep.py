"""The real stack (``make up``) runs a sweep through the ``sweep`` deployment: the cpu worker drives the study,
the gpu worker trains each trial as a run of the ``train`` deployment, the trials nest under one MLflow run and
the best is registered. Slow (the stack's start-up): ``pytest --runslow tests/test_stack_sweep.py``."""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone

import pytest

pytest.register_assert_rewrite("tests.services")
from bench.soak import stack_env  # noqa: E402
from tests.test_stack import TINY_EVAL, genlib  # noqa: E402

TINY_SWEEP = {"family": "ae", "data": {"dataset": "digits", "n_train": 600, "n_val": 100, "n_test": 200},
              "trials": 2, "parallel": 2, "dispatch": "deployment",
              "overrides": {"train": {"epochs": 2}, "evaluation": TINY_EVAL}}


def _port_in(low: int, high: int) -> int:
    """A free loopback port in [low, high] (this test's share of the machine's ports)."""
    for port in range(low, high + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


def _run_deployment(api: str, name: str, parameters: dict, timeout: float = 600) -> tuple[object, list]:
    os.environ["PREFECT_API_URL"] = api
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        run = client.create_flow_run_from_deployment(deployment.id, parameters={"params": parameters},
                                                     state=Scheduled(scheduled_time=datetime.now(timezone.utc)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = client.read_flow_run(run.id)
            if run.state is not None and run.state.is_final():
                break
            time.sleep(2)
        return run, client.read_flow_runs()


@pytest.mark.slow
def test_the_stacks_workers_run_a_sweep_through_the_sweep_deployment(tmp_path):
    from mlflow import MlflowClient

    pp, mp = _port_in(4300, 4399), _port_in(5100, 5199)
    env = stack_env(tmp_path)
    up = genlib(["stack", "up", "--prefect-port", str(pp), "--mlflow-port", str(mp)], env)
    assert up.returncode == 0, up.stderr[-3000:]
    try:
        run, flow_runs = _run_deployment(f"http://127.0.0.1:{pp}/api", "sweep/sweep", TINY_SWEEP)
        logs = "\n".join((tmp_path / "genlib" / "stack" / f"worker-{p}.log").read_text()[-3000:] for p in ("cpu", "gpu"))
        assert run.state.type.value == "COMPLETED", logs
        assert run.work_pool_name == "cpu"
        trials = [r for r in flow_runs if r.name.startswith("trial-") and r.parent_task_run_id is not None]
        assert len(trials) == 2 and all(r.work_pool_name == "gpu" for r in trials), logs
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{mp}", registry_uri=f"http://127.0.0.1:{mp}")
        (parent,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                       "tags.`genlib.kind` = 'sweep'")
        nested = client.search_runs([parent.info.experiment_id],
                                    f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`genlib.kind` = 'train'")
        assert len(nested) == 2 and {r.data.tags["genlib.sweep.trial_state"] for r in nested} <= {"complete", "pruned"}
        assert all(r.data.tags["genlib.prefect_flow_run_id"] in {str(t.id) for t in trials} for r in nested)
        versions = client.search_model_versions("name='genlib-ae-digits'")
        assert len(versions) == 1 and versions[0].run_id in {r.info.run_id for r in nested}
        assert (tmp_path / "optuna.db").exists()  # the study beside the stack's tracking database
    finally:
        down = genlib(["stack", "down"], env)
    assert down.returncode == 0
