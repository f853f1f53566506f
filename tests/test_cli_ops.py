"""The operations commands (pipeline, registry, promote, report, ui): one-line refusals with exit code 2,
and JSON output read back from a real MLflow server."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from genlib.cli import main

pytest.register_assert_rewrite("tests.services")  # before importing it: it is a plugin too (below)
from tests.services import closed_port_uri, registered_version

pytest_plugins = ["tests.services"]  # session services shared with the other modules


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # only this command's output
    try:
        main(list(argv))
        code = 0
    except SystemExit as err:
        code = int(err.code or 0)
    out, err_text = capsys.readouterr()
    return code, out, err_text


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_pipeline_rejects_bad_options_in_one_line(capsys):
    code, _, err = run_cli(capsys, "pipeline", "--models", "vae,nope", "--device", "cpu")
    assert code == 2 and "models" in _one_error_line(err) and "nope" in err
    code, _, err = run_cli(capsys, "pipeline", "--profile", "huge")
    assert code == 2 and "profile" in _one_error_line(err)
    code, _, err = run_cli(capsys, "pipeline", "--epochs", "0", "--device", "cpu")
    assert code == 2 and "epochs" in _one_error_line(err)


def test_pipeline_with_unreachable_tracking_server_stops_at_once(capsys, monkeypatch):
    uri = closed_port_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    t0 = time.monotonic()
    code, _, err = run_cli(capsys, "pipeline", "--models", "vae", "--device", "cpu")
    assert code == 2 and uri in _one_error_line(err)
    assert time.monotonic() - t0 < 15


def test_promote_refusals_are_one_line(capsys, tracking):
    code, _, err = run_cli(capsys, "promote", "genlib-nope-digits", "--version", "1")
    assert code == 2 and "no registered model 'genlib-nope-digits'" in _one_error_line(err)


def test_registry_list_json(capsys, tracking):
    code, out, _ = run_cli(capsys, "registry", "list", "--json")
    assert code == 0 and isinstance(json.loads(out), list)


def test_promote_says_when_nothing_changed_and_registry_list_shows_the_alias(capsys, tracking):
    from genlib.tracking.gates import RECON_FRACTION_OF_MEAN_IMAGE

    name = "genlib-ae-clitest"
    baseline = 1000.0  # the reconstruction gate passes well below RECON_FRACTION_OF_MEAN_IMAGE x baseline
    metrics = {"test_sq_err_per_image": 0.1 * RECON_FRACTION_OF_MEAN_IMAGE * baseline, "test_mse": 0.001,
               "baseline_sq_err_per_image": baseline, "test_loss": 1.0}
    version = registered_version(name, "ae", metrics)
    code, out, err = run_cli(capsys, "promote", name, "--version", version)
    assert code == 0, err
    assert out.strip() == f"{name}@champion -> version {version} (was unset)"
    code, out, err = run_cli(capsys, "promote", name, "--version", version)
    assert code == 0, err
    assert out.strip() == f"{name}: version {version} is already @champion; nothing changed"
    code, out, _ = run_cli(capsys, "registry", "list")
    row = next(line for line in out.splitlines() if line.startswith(name))
    assert row.split()[1:3] == [version, "champion"] and "test_sq_err_per_image=" in row


def test_promote_refused_by_a_gate_names_it_and_the_force_flag(capsys, tracking):
    name = "genlib-ae-clirefused"
    metrics = {"test_sq_err_per_image": 1000.0, "baseline_sq_err_per_image": 1000.0, "test_mse": 0.01,
               "test_loss": 1.0}  # no better than the mean image: the reconstruction gate fails
    version = registered_version(name, "ae", metrics)
    code, _, err = run_cli(capsys, "promote", name, "--version", version)
    line = _one_error_line(err)
    assert code == 2 and "gate reconstruction failed" in line and line.endswith("use --force to override")


def test_report_prints_the_stored_report_and_the_tables_as_json(capsys, tracking):
    import mlflow

    from genlib.evaluation.report import EvaluationReport
    from genlib.tracking import ensure_experiment
    from genlib.tracking import tags as T
    from genlib.tracking.runs import log_report

    table = pd.DataFrame({"model": ["vae"], "fid": [3.5], "recognised": [0.97], "precision": [0.9], "recall": [0.8]})
    experiment_id = ensure_experiment("report-test")
    with mlflow.start_run(experiment_id=experiment_id, tags={T.KIND: "report"}) as run:
        log_report(EvaluationReport(tables={"generative_quality": table}), run.info.run_id)
    code, out, _ = run_cli(capsys, "report", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["run_id"] == run.info.run_id
    assert payload["tables"]["generative_quality"] == table.to_dict(orient="records")
    code, out, _ = run_cli(capsys, "report", "--run", run.info.run_id)
    assert code == 0 and out.startswith(f"# Evaluation report (MLflow run {run.info.run_id})")
    assert "## generative_quality" in out and "| vae | 3.5 |" in out
    code, _, err = run_cli(capsys, "report", "--run", "0" * 32)
    assert code == 2 and "cannot read evaluation run" in _one_error_line(err)


@pytest.mark.slow
def test_ui_starts_both_servers_on_loopback(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("GENLIB_MLFLOW_DIR", str(tmp_path / "mlflow"))
    monkeypatch.setenv("GENLIB_STACK_DIR", str(tmp_path / "genlib"))
    from mlflow import MlflowClient

    from genlib.tracking import resolve_tracking
    from genlib.tracking.links import models_page, runs_view

    experiment = MlflowClient(resolve_tracking().uri).create_experiment("genlib-digits")
    code, out, err = run_cli(capsys, "ui", "--once", "--mlflow-port", "0", "--prefect-port", "0")
    assert code == 0, err
    assert "MLflow UI: http://127.0.0.1:" in out and "Prefect UI: http://127.0.0.1:" in out
    mlflow_url = out.split("MLflow UI: ", 1)[1].split()[0]
    assert f"runs of genlib-digits: {runs_view(mlflow_url, experiment)}\n" in out
    assert f"registered models: {models_page(mlflow_url)}\n" in out
    # Its log goes under the git-ignored state folder, not beside the store (which may be the checkout's).
    assert (tmp_path / "genlib" / "ui" / "mlflow-server.log").is_file()
    assert not list((tmp_path / "mlflow").glob("*.log"))
