"""The execution plan: "auto" has one meaning, the plan is resolved once, and the pipeline flow does what the
plan it is given says (a pool or this process) without deciding again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from genlib.errors import ConfigError
from genlib.plan import ExecutionPlan, resolve_plan

CORES = os.cpu_count() or 1
pytest_plugins = ["tests.services"]  # the Prefect harness and MLflow server of the flow tests below


@pytest.fixture()
def cuda_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one with a CUDA device, as far as the device rule can tell."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_auto_is_genlib_device_first_then_cuda_then_cpu(monkeypatch, cuda_present):
    monkeypatch.delenv("GENLIB_DEVICE", raising=False)
    assert resolve_plan("auto", "local", None, 9).device == "cuda"
    monkeypatch.setenv("GENLIB_DEVICE", "cpu")  # a CUDA machine told to use its CPU (a cpu work pool)
    plan = resolve_plan("auto", "auto", None, 9)
    assert plan.device == "cpu"
    assert plan.workers == min(CORES, 9) and plan.threads == max(1, CORES // plan.workers)
    assert resolve_plan("cuda", "local", None, 9).device == "cuda"  # an explicit device wins over the variable
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("GENLIB_DEVICE")
    assert resolve_plan("auto", "local", None, 9).device == "cpu"


def test_the_same_auto_for_training_as_for_the_plan(monkeypatch, cuda_present):
    from genlib.training import resolve_device

    monkeypatch.setenv("GENLIB_DEVICE", "cpu")
    assert resolve_device("auto") == torch.device("cpu") == torch.device(resolve_plan().device)


def test_workers_follow_the_device_the_jobs_and_the_dispatch(monkeypatch, cuda_present):
    monkeypatch.delenv("GENLIB_DEVICE", raising=False)
    assert resolve_plan("cuda", "local", None, 9).workers == 1  # an accelerator: one process
    assert resolve_plan("cpu", "local", 4, 2).workers == 2  # never more than there are jobs
    assert resolve_plan("cpu", "local", 1, 9).mode == "in-process"
    assert resolve_plan("cpu", "deployment", 4, 9).workers == 1  # training on the deployment's workers
    assert resolve_plan("cpu", "local", 2, 9).mode == "pool"


def test_dispatch_auto_is_settled_once(monkeypatch):
    plan = resolve_plan("cpu", "auto", 2, 9)
    assert plan.mode == "undecided"
    remote = plan.settle(True)
    assert (remote.dispatch, remote.workers, remote.mode) == ("deployment", 1, "deployment")
    assert plan.settle(False) == plan.model_copy(update={"dispatch": "local"})
    assert remote.settle(False) is remote  # a settled plan stays as it is


def test_unavailable_or_unknown_devices_are_one_line_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="cuda"):
        resolve_plan("cuda")
    monkeypatch.setenv("GENLIB_DEVICE", "cuda")
    with pytest.raises(ConfigError, match="cuda"):
        resolve_plan("auto")
    monkeypatch.setenv("GENLIB_DEVICE", "tpu")
    with pytest.raises(ConfigError, match="device"):
        resolve_plan("auto")


def test_training_functions_take_a_resolved_device():
    from genlib.training import TrainConfig, fit, train_model

    with pytest.raises(ConfigError, match="auto"):
        fit(None, None, TrainConfig(), device="auto")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="auto"):
        train_model(None, None, device="auto")  # type: ignore[arg-type]


def test_plan_module_imports_neither_prefect_nor_mlflow():
    code = "import sys, genlib.plan; print('prefect' in sys.modules, 'mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_pipeline_params_carry_the_plan():
    from flows.params import DataParams, PipelineParams

    plan = ExecutionPlan(device="cpu", workers=1, threads=CORES, dispatch="local")
    params = PipelineParams(data=DataParams(dataset="digits"), models=["ae"], plan=plan)
    assert PipelineParams.model_validate_json(params.model_dump_json()).plan == plan  # survives Prefect's JSON
    assert params.train_params(_spec("ae")).device == "cpu"
    remote = params.model_copy(update={"plan": plan.model_copy(update={"dispatch": "deployment"}), "device": "auto"})
    assert remote.train_params(_spec("ae")).device == "auto"  # the deployment's worker resolves it


def _spec(family: str):
    from genlib.spec import resolve_spec

    return resolve_spec("quick", family, {}, None)


# --- the flow uses the plan it is given ---------------------------------------------------------------


@pytest.fixture()
def no_work(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """The pipeline with no family trained: what ran in this process and on a pool is recorded."""
    import flows.pipeline as pipeline_module
    from flows.params import FamilySummary

    calls: dict[str, list] = {"in_process": [], "pool": []}

    def in_process(family, *args):
        calls["in_process"].append(family)
        return FamilySummary(family=family)

    def start_pool(params):
        calls.setdefault("started", []).append(params.plan)
        return "the pool"

    def pool(params, dataset, train_params, parent_run_id, runner):
        assert runner == "the pool"  # the one the flow started before preparing the data
        calls["pool"].append(params.plan)
        return [FamilySummary(family=f) for f in params.models], None

    monkeypatch.setattr(pipeline_module, "run_family", in_process)
    monkeypatch.setattr(pipeline_module, "start_pool", start_pool)
    monkeypatch.setattr(pipeline_module, "run_on_pool", pool)
    return calls


def _pipeline_params(**kw):
    from flows.params import DataParams, PipelineParams
    from tests.services import SMALL_DATA, TINY_EVAL

    values = dict(data=DataParams(**SMALL_DATA), models=["ae", "dae"], device="cpu", dispatch="local",
                  eval_overrides=TINY_EVAL, suite=False)
    return PipelineParams(**{**values, **kw})


@pytest.mark.usefixtures("prefect_api", "tracking")
def test_the_flow_runs_in_process_when_its_plan_says_one_worker(no_work, monkeypatch):
    import genlib.plan
    from flows.pipeline import pipeline

    def decided_again(*args, **kwargs):
        raise AssertionError("the flow resolved the plan it was given again")

    monkeypatch.setattr(genlib.plan, "resolve_plan", decided_again)
    plan = ExecutionPlan(device="cpu", workers=1, threads=CORES, dispatch="local")
    result = pipeline(_pipeline_params(workers=2, plan=plan))  # the plan, not workers=2, decides
    assert no_work == {"in_process": ["ae", "dae"], "pool": []} and "workers" not in result.seconds


@pytest.mark.usefixtures("prefect_api", "tracking")
def test_the_flow_starts_a_pool_when_its_plan_says_so(no_work):
    from flows.pipeline import pipeline

    plan = ExecutionPlan(device="cpu", workers=2, threads=1, dispatch="local")
    result = pipeline(_pipeline_params(workers=1, plan=plan))
    assert no_work == {"in_process": [], "pool": [plan], "started": [plan]} and result.seconds["workers"] == 2


@pytest.mark.usefixtures("prefect_api", "tracking")
def test_a_run_without_a_plan_resolves_it_itself(no_work, monkeypatch, cuda_present):
    from flows.pipeline import pipeline

    monkeypatch.setenv("GENLIB_DEVICE", "cpu")  # a scheduled run on a CUDA machine of the cpu pool
    pipeline(_pipeline_params(device="auto", workers=None))
    if CORES > 1:
        assert no_work["pool"] == [resolve_plan("cpu", "local", None, 2)] and not no_work["in_process"]
    else:
        assert no_work == {"in_process": ["ae", "dae"], "pool": []}

