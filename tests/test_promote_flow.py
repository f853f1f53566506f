"""The ``promote`` flow against real services (Prefect's test harness, an MLflow server): a refusal ends
the flow run Failed with one line naming the gate and the deployment's ``force`` parameter, without a
traceback in its logs; a move ends it Completed with its message, also as a markdown artifact."""

from __future__ import annotations

import uuid

import pytest

pytest.register_assert_rewrite("tests.services")
from tests.services import ROOT  # noqa: F401  (the plugin below sets PREFECT_HOME first)

pytest_plugins = ["tests.services"]
pytestmark = pytest.mark.usefixtures("prefect_api")


def _version(name: str, sq_err_fraction: float) -> str:
    """A registered ae version whose reconstruction gate sees ``sq_err_fraction`` x the baseline (no model files)."""
    from tests.services import registered_version

    return registered_version(name, "ae", {"test_sq_err_per_image": sq_err_fraction * 1000.0,
                                           "baseline_sq_err_per_image": 1000.0, "test_mse": 0.01, "test_loss": 1.0})


def _logs(flow_run_id) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # what the run logged reaches the API before it is read back
    with get_client(sync_client=True) as client:
        return [log.message for log in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))]


def test_refused_promotion_fails_in_one_line_naming_the_gate_and_force(tracking):
    from flows.params import PromoteParams
    from flows.promote import promote

    name = f"genlib-ae-promote{uuid.uuid4().hex[:6]}"
    version = _version(name, sq_err_fraction=1.0)  # above the gate's fraction of the baseline
    state = promote(PromoteParams(name=name, version=version), return_state=True)
    assert state.is_failed()
    message = state.message
    assert "\n" not in message and "gate reconstruction failed" in message
    assert "parameter force" in message and "--force" not in message
    logs = _logs(state.state_details.flow_run_id)
    assert any("gate reconstruction failed" in line for line in logs), logs  # the logs were read back
    assert not any("Traceback" in line or "GateFailedError" in line for line in logs), logs


def test_missing_version_fails_in_one_line(tracking):
    from flows.params import PromoteParams
    from flows.promote import promote

    state = promote(PromoteParams(name="genlib-ae-nope", version="1"), return_state=True)
    assert state.is_failed() and "no registered model 'genlib-ae-nope'" in state.message
    assert not any("Traceback" in line for line in _logs(state.state_details.flow_run_id))


def test_promotion_completes_with_its_message_and_a_markdown_artifact(tracking):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.params import PromoteParams
    from flows.promote import ARTIFACT_KEY, promote

    name = f"genlib-ae-promote{uuid.uuid4().hex[:6]}"
    version = _version(name, sq_err_fraction=0.05)
    state = promote(PromoteParams(name=name, version=version), return_state=True)
    assert state.is_completed(), state.message
    expected = f"{name}@champion -> version {version} (was unset)"
    assert state.message == expected and state.result() == expected
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    markdown = [a for a in artifacts if a.type == "markdown"]  # the others: the run's result records
    assert [a.key for a in markdown] == [ARTIFACT_KEY]
    assert expected in markdown[0].data and "| reconstruction | passed |" in markdown[0].data


def test_only_the_engines_traceback_of_a_returned_failure_is_dropped():
    import logging
    import sys

    from prefect.exceptions import FailedRun

    from flows.promote import _no_traceback_for_returned_failure as keep

    def record(exc: BaseException | None) -> logging.LogRecord:
        try:
            if exc is not None:
                raise exc
        except BaseException:
            return logging.LogRecord("prefect.flow_runs", logging.ERROR, "", 0, "engine", None, sys.exc_info())
        return logging.LogRecord("prefect.flow_runs", logging.ERROR, "", 0, "refused", None, None)

    assert not keep(record(FailedRun("refused")))
    assert keep(record(ValueError("a real crash"))) and keep(record(None))
