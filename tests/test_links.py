"""Links genlib prints into the MLflow UI: the model-training runs view and the registered models page."""

from __future__ import annotations

import types

import pytest

pytest.register_assert_rewrite("tests.services")
from tests.services import closed_port_uri

pytest_plugins = ["tests.services"]

from genlib.tracking import links  # noqa: E402


def test_urls_open_the_model_training_workflow():
    base = "http://127.0.0.1:5001/"
    assert links.runs_view(base, "7") == "http://127.0.0.1:5001/#/experiments/7/runs?workflowType=machine_learning"
    assert links.run_page(base, "7", "abc") == ("http://127.0.0.1:5001/#/experiments/7/runs/abc"
                                                "?workflowType=machine_learning")
    assert links.models_page(base) == "http://127.0.0.1:5001/#/models"
    lines = links.dashboard_lines(base, {"genlib-digits": "7"})
    assert lines == ["  runs of genlib-digits: http://127.0.0.1:5001/#/experiments/7/runs?workflowType=machine_learning",
                     "  registered models: http://127.0.0.1:5001/#/models"]
    empty = links.dashboard_lines(base, {})
    assert "#/experiments?workflowType=machine_learning" in empty[0] and empty[1].endswith("#/models")


def test_store_run_links_come_from_the_same_helper():
    from genlib.tracking.links import ui_url

    assert ui_url("3", "r1", uri="http://h:1") == links.run_page("http://h:1", "3", "r1")
    assert ui_url("3", uri="http://h:1") == links.runs_view("http://h:1", "3")
    assert ui_url("3", uri="sqlite:///x.db") is None


def test_pipeline_summary_links_the_experiment_and_the_registry():
    from genlib.cli.summary import mlflow_links

    remote = "\n".join(mlflow_links(types.SimpleNamespace(uri="http://mlflow:5000", local=False), "digits", "4"))
    assert links.runs_view("http://mlflow:5000", "4") in remote and links.models_page("http://mlflow:5000") in remote
    local = "\n".join(mlflow_links(types.SimpleNamespace(uri="sqlite:////x/mlflow.db", local=True), "digits", "4"))
    assert links.runs_view("http://127.0.0.1:5000", "4") in local and "genlib ui" in local


def test_experiments_are_found_through_the_rest_api(mlflow_server):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    name = "genlib-links-test"
    found = client.get_experiment_by_name(name)
    eid = found.experiment_id if found else client.create_experiment(name)
    client.create_experiment(f"other-{eid}")  # not genlib's: not listed
    experiments = links.find_experiments(mlflow_server)
    assert experiments[name] == eid and all(n.startswith("genlib-") for n in experiments)
    assert links.find_experiments(closed_port_uri(), timeout=2) == {}
