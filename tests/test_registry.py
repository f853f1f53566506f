"""The registry's compare-and-set: concurrent registrations of one model against a real MLflow server, the
registry lock (stale holders, time-outs), gate objects and the version description."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

pytest.register_assert_rewrite("tests.services")
from tests.services import ROOT

pytest_plugins = ["tests.services"]

# Metrics that pass every vae gate (each variant below changes only test_loss, or breaks one gate).
GOOD_VAE = {"baseline_sq_err_per_image": 36.0, "test_sq_err_per_image": 8.0, "test_mse": 0.01, "test_loss": 280.0,
            "fid": 30.0, "fid_real_floor": 1.0, "class_accuracy": 0.9, "recognised": 0.95, "precision": 0.9,
            "recall": 0.8}

# One registration in its own process: a run and a logged model of its own, then "ready", then
# register_version once the go-file appears, so every process reaches the alias moves together.
_WORKER = r"""
import json, os, sys, time
import mlflow
from mlflow import MlflowClient
from genlib.tracking.registry import register_version
uri, dataset, metrics, go = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
mlflow.set_tracking_uri(uri); mlflow.set_registry_uri(uri)
client = MlflowClient()
exp_id = client.get_experiment_by_name("genlib-" + dataset).experiment_id
run = client.create_run(exp_id)
model = client.create_logged_model(exp_id, source_run_id=run.info.run_id, name="model")
client.finalize_logged_model(model.model_id, "READY")
client.set_terminated(run.info.run_id)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.01)
reg = register_version(f"models:/{model.model_id}", run.info.run_id, "vae", dataset, "c" * 64, metrics, commit="x")
print(json.dumps({"run_id": run.info.run_id, "version": reg.version, "promoted": reg.promoted,
                  "reason": reg.reason}))
"""


def _passes(metrics: dict) -> bool:
    from genlib.tracking.gates import check_gates

    return all(c.passed for c in check_gates("vae", metrics))


def test_concurrent_registrations_end_on_the_best_version_that_passed(tracking, tmp_path):
    from mlflow import MlflowClient

    from genlib.tracking.locks import lock_name
    from genlib.tracking.registry import metrics_from_tags, registered_model_name

    dataset = f"race{uuid.uuid4().hex[:6]}"
    losses = [300.0, 210.0, 250.0, 190.0, 120.0, 230.0]
    variants = [{**GOOD_VAE, "test_loss": loss} for loss in losses]
    variants[4]["test_sq_err_per_image"] = 35.0  # the lowest loss, but fails the reconstruction gate
    passing = [v for v in variants if _passes(v)]
    assert len(passing) == len(variants) - 1 and not _passes(variants[4])
    best_loss = min(v["test_loss"] for v in passing)

    client = MlflowClient()
    client.create_experiment(f"genlib-{dataset}")
    go = tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, tracking, dataset, json.dumps(v), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for v in variants]
    for p in procs:  # every process has imported, made its run and model, and waits
        assert p.stdout.readline().strip() == "ready", p.stderr.read()[-2000:]
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))

    name = registered_model_name("vae", dataset)
    versions = {str(mv.version): mv for mv in client.search_model_versions(f"name='{name}'")}
    assert sorted(versions) == sorted(r["version"] for r in results)  # one version per registration, none lost
    assert len(versions) == len(variants)
    for r in results:
        assert client.get_run(r["run_id"]).info.status == "FINISHED"
        assert versions[r["version"]].run_id == r["run_id"] and versions[r["version"]].status == "READY"
        assert versions[r["version"]].description.startswith(("First version", "Version", "Champion until"))
    aliases = client.get_registered_model(name).aliases
    champion = versions[str(aliases["champion"])]
    assert metrics_from_tags(champion.tags)["test_loss"] == best_loss
    assert str(aliases["challenger"]) == str(max(int(v) for v in versions))
    # Every promotion that happened was an improvement over the champion read under the lock.
    assert sum(r["promoted"] for r in results) >= 1
    with pytest.raises(Exception):
        client.get_registered_model(lock_name(name))  # released


def _fake_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException:
        pass


def test_lock_of_a_dead_local_holder_is_broken_at_once(tracking):
    from mlflow import MlflowClient

    from genlib.tracking.locks import HOLDER_TAG, acquire, lock_name, release

    client = MlflowClient()
    name = f"genlib-test-{uuid.uuid4().hex[:6]}"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    client.create_registered_model(lock_name(name), tags={HOLDER_TAG: f"{socket.gethostname()}:{dead.pid}:x"})
    t0 = time.monotonic()
    token = acquire(client, name, timeout=30)
    assert time.monotonic() - t0 < 10
    assert client.get_registered_model(lock_name(name)).tags[HOLDER_TAG] == token
    release(client, name, token)
    with pytest.raises(Exception):
        client.get_registered_model(lock_name(name))


def test_lock_held_by_a_live_process_times_out_naming_it_then_goes_stale(tracking):
    from mlflow import MlflowClient

    from genlib.tracking.errors import RegistryError
    from genlib.tracking.locks import HOLDER_TAG, acquire, lock_name, release

    client = MlflowClient()
    name = f"genlib-test-{uuid.uuid4().hex[:6]}"
    holder = f"{socket.gethostname()}:{os.getpid()}:other"  # alive: this very process, another acquisition
    client.create_registered_model(lock_name(name), tags={HOLDER_TAG: holder})
    with pytest.raises(RegistryError, match="held by .*:other"):
        acquire(client, name, timeout=1.5, stale_after=60)
    token = acquire(client, name, timeout=30, stale_after=1.0)  # seen unchanged for 1 s: broken
    assert token != holder
    release(client, name, token)


def test_lock_freed_while_the_store_reads_back_the_duplicate_is_taken_not_raised(tracking):
    """MLflow answers a duplicate name by reading the existing model back; if its holder released it
    in between, create fails with RESOURCE_DOES_NOT_EXIST (seen in CI with six racing processes)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    from genlib.tracking.locks import HOLDER_TAG, acquire, lock_name, release

    real = MlflowClient()
    name = f"genlib-test-{uuid.uuid4().hex[:6]}"
    real.create_registered_model(lock_name(name), tags={HOLDER_TAG: "elsewhere:1:held"})

    class RacingClient:
        """The real client, except that its first create sees the holder release mid-request."""

        def __init__(self):
            self.creates = 0

        def __getattr__(self, attr):
            return getattr(real, attr)

        def create_registered_model(self, *args, **kwargs):
            self.creates += 1
            if self.creates == 1:
                real.delete_registered_model(lock_name(name))  # the holder releases...
                raise MlflowException(f"Registered Model with name={lock_name(name)} not found",
                                      error_code=RESOURCE_DOES_NOT_EXIST)  # ...as the store reads back
            return real.create_registered_model(*args, **kwargs)

    client = RacingClient()
    token = acquire(client, name, timeout=30)
    assert client.creates == 2
    assert real.get_registered_model(lock_name(name)).tags[HOLDER_TAG] == token
    release(real, name, token)


def _logged_model(client, experiment_id: str) -> tuple[str, str]:
    """A finished run with a (weightless) logged model: enough for the registry, which reads tags only."""
    run = client.create_run(experiment_id)
    model = client.create_logged_model(experiment_id, source_run_id=run.info.run_id, name="model")
    client.finalize_logged_model(model.model_id, "READY")
    client.set_terminated(run.info.run_id)
    return run.info.run_id, f"models:/{model.model_id}"


def test_versions_carry_gate_objects_and_say_why_they_are_champion(tracking):
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from genlib.cli.app import app
    from genlib.cli.summary import registry_table
    from genlib.tracking.registry import list_registry, promote, register_version

    client = MlflowClient()
    dataset = f"notes{uuid.uuid4().hex[:6]}"
    experiment_id = client.create_experiment(f"genlib-{dataset}")

    eval_runs = {}

    def register(**changes):
        run_id, uri = _logged_model(client, experiment_id)
        eval_run = client.create_run(experiment_id).info.run_id  # the evaluation that measured the metrics
        reg = register_version(uri, run_id, "vae", dataset, "d" * 64, {**GOOD_VAE, **changes}, commit="x",
                               extra_tags={"genlib.eval_run_id": eval_run})
        eval_runs[reg.version] = eval_run
        return reg

    v1 = register(test_loss=300.0)
    v2 = register(test_loss=200.0)
    v3 = register(test_loss=100.0, test_sq_err_per_image=35.0)  # best loss, failed reconstruction gate
    v4 = register(test_loss=250.0)
    assert (v1.promoted, v2.promoted, v3.promoted, v4.promoted) == (True, True, False, False)

    entry = next(m for m in list_registry() if m["name"] == v1.name)
    by_version = {v["version"]: v for v in entry["versions"]}
    for reg, status in ((v1, "passed"), (v2, "passed"), (v3, "failed"), (v4, "passed")):
        gates = by_version[reg.version]["gates"]
        assert gates["status"] == status
        assert gates["checks"] and all({"metric", "value", "threshold", "op", "passed"} <= set(c)
                                       for c in gates["checks"])
        assert all(c["op"] in ("<=", ">=", ">", "<") for c in gates["checks"] if c["threshold"] is not None)
    failed = [c for c in by_version[v3.version]["gates"]["checks"] if not c["passed"]]
    assert [c["metric"] for c in failed] == ["test_sq_err_per_image"] and failed[0]["value"] == 35.0

    desc = {v: by_version[v]["description"] for v in by_version}
    name = v1.name
    assert desc[v2.version].startswith(f"Version {v2.version} of {name}, made champion: test_loss = 200 beats")
    assert "300" in desc[v2.version] and f"replacing version {v1.version}." in desc[v2.version]
    assert desc[v1.version].startswith(f"Champion until version {v2.version}")
    assert desc[v3.version].startswith(f"Version {v3.version} of {name}, not champion: it failed the "
                                       "reconstruction gate.")
    assert desc[v4.version].startswith(f"Version {v4.version} of {name}, not champion: test_loss = 250 does not beat")
    assert client.get_model_version(v2.name, v2.version).description == desc[v2.version]  # what MLflow's UI shows
    # The gates as a markdown table (the failed one marked), then the headline metrics and a link to the
    # evaluation run (MLflow's version page shows the description and tags, not the logged model's metrics).
    assert "**Gates: failed**" in desc[v3.version]
    assert "| reconstruction | test_sq_err_per_image | 35 | <= 27 | **failed** |" in desc[v3.version]
    assert "| recognised | recognised | 0.95 | >= 0.4 | passed |" in desc[v2.version]
    assert "| test_loss | 200 |" in desc[v2.version] and "| test_sq_err_per_image |" in desc[v2.version]
    assert f"(#/experiments/{experiment_id}/runs/{eval_runs[v2.version]})" in desc[v2.version]
    assert "| test_loss | 300 |" in desc[v1.version] and eval_runs[v1.version] in desc[v1.version]

    # A handful of tags, the readable ones first (MLflow's versions table lists them in the order set); the
    # gate object keeps the exact metrics the gates read, and nothing of another family's.
    tags = client.get_model_version(v2.name, v2.version).tags
    assert list(tags)[:4] == ["gates", "metric.test_loss", "metric.test_sq_err_per_image", "metric.fid"]
    assert tags["gates"] == "passed" and tags["metric.test_loss"] == "200"
    assert client.get_model_version(v3.name, v3.version).tags["gates"] == "failed: reconstruction"
    assert len(tags) <= 9 and not [k for k in tags if k.startswith("metric.baseline")]
    stored = json.loads(tags["genlib.gates"])["metrics"]
    assert stored["test_loss"] == 200.0 and stored["baseline_sq_err_per_image"] == 36.0

    forced = promote(v3.name, v3.version, force=True)
    assert forced.forced and forced.changed and forced.previous == v2.version
    again = promote(v3.name, v3.version, force=True)
    assert not again.changed  # nothing moved the second time
    result = CliRunner().invoke(app, ["registry", "list", "--json"])
    assert result.exit_code == 0, result.output
    listed = next(m for m in json.loads(result.output) if m["name"] == v1.name)
    forced_entry = next(v for v in listed["versions"] if v["version"] == v3.version)
    assert forced_entry["gates"]["status"] == "forced" and forced_entry["aliases"] == ["champion"]
    assert "forced" in forced_entry["description"]
    table = registry_table([listed]).splitlines()
    row = next(line for line in table[2:] if line.split()[1] == v3.version)
    assert "forced: reconstruction" in row
    assert next(line for line in table[2:] if line.split()[1] == v4.version).split()[-2] == "passed"
