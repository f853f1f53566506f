"""The Prefect flows against real services: Prefect's test harness and an MLflow tracking server.

Families are split between tests so registered names never collide: the end-to-end test owns vae and
cgan, the divergence test ae, the deployment test dae.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import numpy as np
import pytest
from pydantic import ValidationError

from flows.params import DataParams, PipelineParams, TrainParams, TrainResult

pytest.register_assert_rewrite("tests.services")  # before importing it: it is a plugin too (below)
from tests.services import BIN, ROOT, SMALL_DATA, TINY_EVAL, closed_port_uri, free_port, stop, wait_http

# The session services as a plugin: one MLflow server and one Prefect harness for every module using them.
pytest_plugins = ["tests.services"]

pytestmark = pytest.mark.usefixtures("prefect_api")


def _params(models: list[str], **kw) -> PipelineParams:
    # In this process unless a test asks for workers: several tests patch what a family runs.
    values = dict(data=DataParams(**SMALL_DATA), models=models, device="cpu", dispatch="local",
                  eval_overrides=TINY_EVAL, workers=1)
    values.update(kw)
    return PipelineParams(**values)


def test_jobs_start_in_order_of_their_training_cost_not_their_epochs():
    """The quick gan trains 10 epochs of convolutions, the rbm 20 cheap CD epochs: by epochs the rbm went
    first and the gan finished last with one core idle. By counted FLOPs x epochs the gan goes first; and
    more epochs of the same model cost more."""
    from flows.local_pool import longest_first, training_cost
    from genlib.spec import resolve_spec

    families = ["ae", "conv-ae", "dae", "vae", "cvae", "gan", "cgan", "rbm"]
    specs = {f: resolve_spec("quick", f, {}, None) for f in families}
    order = longest_first(families, {f: TrainParams(family=f, spec=specs[f]) for f in families})
    assert order[:2] == ["vae", "cvae"]
    assert order.index("gan") < order.index("rbm") and order.index("cgan") < order.index("rbm")
    assert set(order[-3:]) == {"ae", "dae", "conv-ae"}
    longer = resolve_spec("quick", "rbm", {"train": {"epochs": 40}}, None)
    assert training_cost(longer) == pytest.approx(2 * training_cost(specs["rbm"]))


def _runs(**tags: str) -> list:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    where = " and ".join(f"tags.`{k.replace('__', '.')}` = '{v}'" for k, v in tags.items()) or None
    return client.search_runs(ids, where, run_view_type=ViewType.ALL)


def test_invalid_parameters_are_rejected_before_any_work(tracking):
    from prefect.exceptions import ParameterTypeError

    from flows.pipeline import pipeline
    from flows.train import train

    with pytest.raises(ValidationError, match="models"):
        PipelineParams(models=["nope"])
    with pytest.raises(ValidationError, match="latent_dim"):
        TrainParams(family="vae", overrides={"model": {"latent_dim": 0}})
    with pytest.raises(ValidationError, match="epochs"):
        PipelineParams(models=["ae"], train_overrides={"epochs": 0})
    with pytest.raises(ValidationError, match="fid_samples"):
        PipelineParams(eval_overrides={"fid_samples": 1})
    with pytest.raises(ValidationError, match="device"):
        PipelineParams(device="tpu")
    before = len(_runs())
    with pytest.raises(ParameterTypeError):
        pipeline(params={"models": ["nope"]})
    with pytest.raises(ParameterTypeError):
        train(params={"family": "vae", "overrides": {"model": {"hidden_dims": "wide"}}})
    assert len(_runs()) == before


def test_deployment_form_renders_choices_defaults_and_examples():
    from prefect.utilities.callables import parameter_schema

    from flows.pipeline import pipeline
    from genlib.models import list_models

    props = parameter_schema(pipeline).model_dump()["definitions"]["PipelineParams"]["properties"]
    # A multi-select of the families with all of them selected (a static default, not a factory).
    assert props["models"]["items"]["enum"] == list_models() and props["models"]["default"] == list_models()
    assert props["device"]["enum"] == ["auto", "cpu", "cuda", "mps"] and props["device"]["default"] == "auto"
    for name in ("model_overrides", "train_overrides", "eval_overrides"):
        assert props[name]["description"] and props[name]["examples"], name
    PipelineParams(**{k: v["examples"][0] for k, v in props.items() if k.endswith("_overrides")},
                   models=["vae", "gan"])  # the examples are valid values


def test_unreachable_tracking_server_fails_early_naming_the_uri(prefect_api, monkeypatch):
    from flows.pipeline import pipeline
    from genlib.tracking import TrackingUnavailableError

    uri = closed_port_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match=uri.replace(".", r"\.")):
        pipeline(_params(["vae"]))
    assert time.monotonic() - t0 < 30


def test_diverging_training_leaves_a_failed_run_and_registers_nothing(tracking):
    from mlflow import MlflowClient

    from flows.pipeline import PipelineFailedError, pipeline

    params = _params(["ae"], model_overrides={"ae": {"lr": 1e6}}, train_overrides={"epochs": 3})
    with pytest.raises(PipelineFailedError) as err:
        pipeline(params)
    summary = err.value.result.families[0]
    assert "diverged" in summary.error and summary.registration is None
    runs = _runs(genlib__kind="train", genlib__model="ae")
    assert runs and {r.info.status for r in runs} == {"FAILED"}
    assert not MlflowClient().search_registered_models("name = 'genlib-ae-digits'")


def test_pipeline_end_to_end_registers_champions_that_load(tracking, capsys):
    import mlflow
    from mlflow import MlflowClient

    from flows.evaluate import SUITE_TABLES
    from flows.pipeline import pipeline
    from genlib.tracking import load_genlib_model
    from genlib.tracking.registry import metrics_from_tags
    from genlib.tracking.runs import load_report_tables

    # About 10 s of training each on 2 cores. Whether they pass the sample-quality gates at this size is
    # not the point here (test_tracking tests the gates): a first registration is champion iff it passed.
    # In two worker processes (make run's way on a CPU): the families and the suite run at once, on the pool
    # the plan asks for (resolved here as `genlib pipeline` resolves it).
    params = _params(["vae", "cgan"], train_overrides={"epochs": 12, "batch_size": 32},
                     model_overrides={"vae": {"lr": 3e-3}}, workers=2)
    params = params.model_copy(update={"plan": params.resolve_plan()})
    assert params.plan.mode == "pool" and params.plan.workers == 2
    first = pipeline(params)
    assert first.seconds["workers"] == 2 and first.seconds["pool"] > 0
    for family in first.families:
        assert family.error is None, family.error
        reg = family.registration
        assert "challenger" in reg.aliases and reg.promoted == (reg.failed_gate is None), reg
        assert reg.promoted == ("champion" in reg.aliases)
        assert not family.train.cached
    # ("skipped" only when something did not run: labelled digits run every section)
    assert set(SUITE_TABLES) - {"skipped"} <= set(load_report_tables(first.report_run_id))
    # `genlib report --json` shows them, the three claims of issue 25 among them (the rbm as a probe row).
    from genlib.cli import main

    capsys.readouterr()
    try:
        main(["report", "--run", first.report_run_id, "--json"])
    except SystemExit as done:
        assert not done.code
    shown = json.loads(capsys.readouterr().out)["tables"]
    assert {"latent_sampling", "generative_vs_discriminative", "field_checks"} <= set(shown)
    assert "rbm" in {row["method"] for row in shown["pca_vs_ae"]}
    assert {row["codes_key"] for row in shown["latent_sampling"]} == {"normal", "fitted", "interpolation"}

    # One parent run per pipeline run: each family's train and evaluation runs, the suite and the report
    # nest under it, and it holds the summary table.
    client = MlflowClient()
    parent = client.get_run(first.run_id)
    assert parent.data.tags["genlib.kind"] == "pipeline" and parent.info.status == "FINISHED"
    children = _runs(mlflow__parentRunId=first.run_id)
    from genlib.evaluation.suite import list_sections

    kinds = sorted(r.data.tags["genlib.kind"] for r in children)
    assert kinds == sorted(["evaluation", "evaluation", "report", "train", "train"] + ["suite"] * len(list_sections()))
    # Each suite section ran as its own job on the pool, beside the families: the pool's two slots are this
    # process's thread and one worker process, and between them they ran every section and training.
    assert sorted(r.data.tags["genlib.suite_section"] for r in children
                  if r.data.tags["genlib.kind"] == "suite") == sorted(list_sections())
    pool_pids = {r.data.tags["genlib.pid"] for r in children if r.data.tags["genlib.kind"] in ("suite", "train")}
    assert len(pool_pids) == 2 and str(os.getpid()) in pool_pids, pool_pids
    # ...and at once: a job of one slot started before a job of the other ended, and vice versa.
    jobs = [r for r in children if r.data.tags["genlib.kind"] in ("suite", "train")]
    assert any(a.data.tags["genlib.pid"] != b.data.tags["genlib.pid"]
               and a.info.start_time < b.info.end_time and b.info.start_time < a.info.end_time
               for a in jobs for b in jobs), [(r.info.run_name, r.info.start_time, r.info.end_time) for r in jobs]
    summary = client.load_table(parent.info.experiment_id, "summary.json", run_ids=[first.run_id])
    assert sorted(summary["family"]) == ["cgan", "vae"] and summary["version"].notna().all()
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    # One definition per metric: the registered (gated) value is the evaluation run's, and training logs
    # no test metrics of its own. The evaluation's metrics are on the logged model too.
    vae = next(f for f in first.families if f.family == "vae")
    version = client.get_model_version("genlib-vae-digits", vae.registration.version)
    eval_metrics = client.get_run(vae.evaluation.run_id).data.metrics
    registered = metrics_from_tags(version.tags)  # exact values, from the gate object
    for key in ("test_loss", "test_sq_err_per_image", "fid"):
        assert registered[key] == eval_metrics[key], key
    assert version.tags["genlib.eval_run_id"] == vae.evaluation.run_id
    # The data's reference row, the sample-quality gates' yardstick, is on the data run (prepare_data computed it
    # once) and the gates read the very same values.
    reference = {k: v for k, v in client.get_run(first.dataset.run_id).data.metrics.items() if k.startswith("reference_")}
    assert {"reference_fid", "reference_fid_scale", "reference_precision", "reference_recall"} <= set(reference)
    assert reference["reference_labelled"] == 1.0
    for key in ("reference_fid", "reference_precision", "reference_recall"):
        assert registered[key] == reference[key] == eval_metrics[key], key
    assert not [k for k in client.get_run(vae.train.run_id).data.metrics if k.startswith("test_")]
    model_metrics = {m.key: m.value for m in client.get_logged_model(vae.train.model_id).metrics}
    assert model_metrics["test_loss"] == eval_metrics["test_loss"] and "fid" in model_metrics

    vae = mlflow.pyfunc.load_model("models:/genlib-vae-digits@challenger")
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    assert vae.predict(x).shape == (4, 1, 28, 28)
    assert vae.predict(x[:0], params={"n": 6, "seed": 0}).shape == (6, 1, 28, 28)
    cgan = mlflow.pyfunc.load_model("models:/genlib-cgan-digits@challenger")
    images = cgan.predict(x[:0], params={"n": 4, "seed": 3, "labels": [7, 7, 1, 1]})
    assert images.shape == (4, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert load_genlib_model("models:/genlib-cgan-digits@challenger").name == "cgan"

    # Unchanged inputs: nothing retrains or re-evaluates, and no version is added.
    second = pipeline(params)
    for a, b in zip(first.families, second.families):
        assert b.train.cached and b.evaluation.cached
        assert (b.train.run_id, b.registration.version) == (a.train.run_id, a.registration.version)
    assert second.report_run_id == first.report_run_id


def test_train_cache_is_not_reused_against_another_tracking_store(tracking, tmp_path, monkeypatch):
    from flows.train import train

    params = TrainParams(family="gan", data=DataParams(**SMALL_DATA), device="cpu", overrides={
        "train": {"epochs": 1}, "model": {"generator_features": 8, "discriminator_features": 8}})
    first = train(params)
    assert train(params).cached
    # The cached result is JSON (a pydantic model's dump), never a pickle.
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    files = [p for p in PREFECT_LOCAL_STORAGE_PATH.value().expanduser().rglob("*") if p.is_file()]
    cache_records = []
    for path in files:
        stored = json.loads(path.read_bytes())  # a pickle (base64 of one) would not parse
        if "metadata" in stored:  # a cache record: its metadata names the serializer of its result
            assert stored["metadata"]["serializer"]["type"] == "genlib-json", path
            cache_records.append(json.loads(stored["result"]))
        else:  # a run's own result (or a failed run's error), written by the same serializer
            assert "model" in stored or "error" in stored, path
    assert any(r.get("model") == "TrainResult" and r["data"]["run_id"] == first.run_id for r in cache_records)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    other = train(params)
    assert not other.cached and other.run_id != first.run_id


def test_train_deployment_runs_on_a_process_worker(tracking, prefect_api, tmp_path):
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from flows.pipeline import pipeline
    from flows.train import train

    pool = "test-gpu"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    train.from_source(source=str(ROOT), entrypoint="flows/train.py:train").deploy(
        name="train-test", work_pool_name=pool, job_variables={"env": {"GENLIB_DEVICE": "cpu"}},
        print_next_steps=False, ignore_warnings=True)
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": tracking,
           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1",
           "GENLIB_PROJECT_DIR": str(ROOT)}
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
                               "--limit", "2"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        result = pipeline(_params(["dae"], dispatch="deployment", train_deployment="train/train-test",
                                  train_overrides={"epochs": 4}, suite=False))
    finally:
        stop(worker)
        log.close()
    family = result.families[0]
    assert family.error is None, (tmp_path / "worker.log").read_text()[-3000:]
    run = MlflowClient().get_run(family.train.run_id)
    assert run.data.tags["genlib.prefect_flow_run_id"] != ""  # trained by the worker's flow run
    version = MlflowClient().get_model_version("genlib-dae-digits", family.registration.version)
    assert version.run_id == family.train.run_id


# --- interrupted training and a lost tracking server ----------------------------------------------

EPOCHS = 60
_TRAIN_SCRIPT = """
import sys
from flows.params import DataParams, TrainParams
from flows.train import train
params = TrainParams.model_validate_json(sys.argv[1])
print("RESULT", train(params).model_dump_json(), flush=True)
"""


def _resume_params() -> TrainParams:
    # Long enough (about 0.25 s an epoch) to be killed mid-run; a spec no other test trains.
    return TrainParams(family="conv-ae", data=DataParams(**SMALL_DATA), device="cpu", overrides={
        "model": {"channels": (4, 8), "latent_dim": 4}, "train": {"epochs": EPOCHS, "checkpoint_every": 5}})


def _train_in_subprocess(params: TrainParams, env: dict) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "python"), "-c", _TRAIN_SCRIPT, params.model_dump_json()], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.slow  # about 1.5 min: two training subprocesses and an uninterrupted reference
def test_training_killed_mid_run_resumes_into_the_same_run_with_the_same_weights(tracking, prefect_api):
    import signal

    import torch
    from mlflow import MlflowClient

    from flows.common import load_data
    from genlib.tracking import load_genlib_model, resume, store_identity
    from genlib.tracking.resume import resume_point
    from genlib.training import train_model

    params = _resume_params()
    data = load_data(params.data)
    spec = params.resolve(data)
    key = spec.cache_key(data.digest)
    point = resume_point(spec.family, key, store_identity())
    resume.clear(point)
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": tracking,
           "PREFECT_LOGGING_LEVEL": "INFO"}  # as a user's console shows it

    first = _train_in_subprocess(params, env)
    deadline = time.monotonic() + 240
    try:
        while resume_point(spec.family, key, store_identity()).epoch < 10:
            assert first.poll() is None, first.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint at epoch 10 within 4 minutes"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.wait()
    killed = resume_point(spec.family, key, store_identity())
    assert killed.resumable and 10 <= killed.epoch < EPOCHS

    # The same command again: it resumes from the checkpoint, into the same MLflow run, and says so.
    second = _train_in_subprocess(params, env)
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out[-3000:]
    assert f"resumed conv-ae from epoch {killed.epoch}" in out
    result = TrainResult.model_validate_json(out.split("RESULT ", 1)[1].splitlines()[0])
    assert result.run_id == killed.run_id and result.resumed_from_epoch == killed.epoch
    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["genlib.resumed_from_epoch"] == str(killed.epoch)
    steps = {m.step for m in MlflowClient().get_metric_history(result.run_id, "train_loss")}
    assert steps == set(range(1, EPOCHS + 1))
    assert not point.folder.exists()  # nothing left to resume once the model is logged

    # The weights of an uninterrupted run on the CPU.
    reference = train_model(spec.model, data, spec.train, device="cpu", progress=False).model.cpu()
    resumed = load_genlib_model(result.model_uri)
    for name, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


@pytest.mark.slow  # about 1 min: its own MLflow server, started twice
def test_pipeline_stops_when_the_tracking_server_goes_away(prefect_api, tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    import flows.pipeline as pipeline_module
    from genlib.tracking import TrackingUnavailableError

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    def start_server() -> subprocess.Popen:  # on the same store and port each time
        return subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
             "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})

    server = start_server()
    try:
        wait_http(f"{uri}/health", timeout=180, proc=server)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        started: list[str] = []
        run_family = pipeline_module.run_family

        def then_lose_the_server(family, *args):
            started.append(family)
            summary = run_family(family, *args)
            stop(server)  # the server goes away after the first family
            return summary

        monkeypatch.setattr(pipeline_module, "run_family", then_lose_the_server)
        with pytest.raises(TrackingUnavailableError) as err:
            pipeline_module.pipeline(_params(["ae", "dae", "rbm"], train_overrides={"epochs": 1}, suite=False))
    finally:
        stop(server)
    message = str(err.value)
    assert "\n" not in message and uri in message
    assert "finished: ae" in message and "not finished (nothing registered): dae, rbm" in message
    assert started == ["ae"]  # no family started against the dead server
    # The server back on the same store: ae was registered, nothing else.
    server = start_server()
    try:
        wait_http(f"{uri}/health", timeout=180, proc=server)
        names = {m.name for m in MlflowClient(uri).search_registered_models()}
        assert names == {"genlib-ae-digits"}
    finally:
        stop(server)


def test_a_retried_training_resumes_from_its_last_checkpoint(tracking, monkeypatch):
    import torch
    from mlflow import MlflowClient

    from flows.common import load_data
    from flows.train import train
    from genlib.tracking import load_genlib_model
    from genlib.tracking.callback import MLflowCallback
    from genlib.training import train_model

    params = TrainParams(family="ae", data=DataParams(**SMALL_DATA), device="cpu", retries=1, overrides={
        "model": {"hidden_dims": (32,), "latent_dim": 4}, "train": {"epochs": 8, "checkpoint_every": 3}})
    crashes = []
    on_epoch_end = MLflowCallback.on_epoch_end

    def crash_once(self, epoch, metrics, model):
        on_epoch_end(self, epoch, metrics, model)
        if epoch == 5 and not crashes:  # a crash that is no genlib error: worth a retry
            crashes.append(self.run_id)
            raise RuntimeError("worker lost")

    monkeypatch.setattr(MLflowCallback, "on_epoch_end", crash_once)
    result = train(params)
    assert crashes == [result.run_id] and result.resumed_from_epoch == 3  # the retry continued the same run
    assert MlflowClient().get_run(result.run_id).info.status == "FINISHED"
    data = load_data(params.data)
    spec = params.resolve(data)
    reference = train_model(spec.model, data, spec.train, device="cpu", progress=False).model.cpu()
    resumed = load_genlib_model(result.model_uri)
    for name, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_pool_slots_are_a_thread_here_and_worker_processes():
    """A pool of 3 slots: this process's thread and 2 worker processes, spawned at the top of the flow (their
    first job: worker_ready). Jobs go to free slots, this process's first; each answers with its process id
    (a worker_ready that raised only logged an error while the pool still worked), and this process gets
    its torch thread count back when the pool closes."""
    import threading

    import torch
    from prefect import flow
    from prefect.futures import wait

    from flows.local_pool import start_pool, wait_for_stopped_workers, worker_ready
    from genlib.plan import ExecutionPlan

    plan = ExecutionPlan(device="cpu", workers=3, threads=1, dispatch="local")
    params = _params(["ae"]).model_copy(update={"plan": plan})
    threads_before = torch.get_num_threads()

    @flow
    def started() -> tuple[list[int], list[bool], int]:
        pool = start_pool(params)
        try:
            answers, refused = [], []
            for _ in range(2):  # two rounds of as many jobs as there are slots
                futures = []
                while pool.free():
                    futures.append(pool.submit(worker_ready, {}))
                refused.append(pool.free())
                wait(futures)
                for f in futures:
                    answers.append(f.result())
                    pool.finished(f)
            return answers, refused, torch.get_num_threads()
        finally:
            pool.close()

    pids, refused, threads_inside = started()
    wait_for_stopped_workers()
    assert len(pids) == 6 and refused == [False, False], (pids, refused)
    assert pids.count(os.getpid()) == 2  # one job per round in this process's thread
    workers = set(pids) - {os.getpid()}
    assert 1 <= len(workers) <= 2 and all(isinstance(p, int) for p in workers)
    assert threads_inside == 1 and torch.get_num_threads() == threads_before
    assert not [t for t in threading.enumerate() if t.name == "genlib-stop-workers"]
