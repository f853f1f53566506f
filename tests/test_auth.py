"""Locked servers: the stack with MLflow's basic-auth app and Prefect's API auth string answers anonymous
requests with 401, and a pipeline given the credentials registers a version."""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request

import pytest

pytest.register_assert_rewrite("tests.services", "tests.test_stack")
from tests.services import free_port
from tests.test_stack import genlib, stack_env


def status(url: str, auth: tuple[str, str] | None = None, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.slow
def test_locked_stack_answers_401_and_an_authenticated_pipeline_registers(tmp_path):
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs mlflow[auth] (Flask-WTF)")
    password = secrets.token_urlsafe(18)
    (tmp_path / "admin-password").write_text(password + "\n")
    prefect_user = ("genlib", secrets.token_urlsafe(12))
    env = stack_env(tmp_path, MLFLOW_AUTH_ADMIN_PASSWORD_FILE=str(tmp_path / "admin-password"),
                    PREFECT_SERVER_API_AUTH_STRING=":".join(prefect_user),
                    MLFLOW_AUTH_CONFIG_PATH=str(tmp_path / "basic_auth.ini"),
                    MLFLOW_AUTH_DATABASE_URI=f"sqlite:///{tmp_path / 'basic_auth.db'}")
    pp, mp = free_port(), free_port()
    up = genlib(["stack", "up", "--no-deploy", "--prefect-port", str(pp), "--mlflow-port", str(mp)], env)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        mlflow_api = f"http://127.0.0.1:{mp}/api/2.0/mlflow/experiments/search?max_results=1"
        prefect_api = f"http://127.0.0.1:{pp}/api/flows/filter"
        assert status(mlflow_api) == 401
        assert status(mlflow_api, ("admin", "wrong-password")) == 401
        assert status(mlflow_api, ("admin", password)) == 200
        assert status(prefect_api, data=b"{}") == 401
        assert status(prefect_api, ("genlib", "wrong"), data=b"{}") == 401
        assert status(prefect_api, prefect_user, data=b"{}") == 200
        assert "password" not in (tmp_path / "basic_auth.ini").read_text().replace("admin_password", "")

        clients = {k: v for k, v in env.items() if not k.startswith(("MLFLOW_AUTH", "PREFECT_SERVER"))}
        clients.update(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{mp}", PREFECT_API_URL=f"http://127.0.0.1:{pp}/api")
        anonymous = genlib(["registry", "list"], clients, timeout=300)
        assert anonymous.returncode != 0  # no credentials: refused

        clients.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=password,
                       PREFECT_API_AUTH_STRING=":".join(prefect_user))
        run = genlib(["pipeline", "--dataset", "digits", "--models", "ae", "--n-train", "600", "--epochs", "2",
                      "--no-suite", "--dispatch", "local", "--device", "cpu", "--json"], clients, timeout=900)
        assert run.returncode in (0, 2), run.stderr[-3000:]
        result = json.loads(run.stdout[run.stdout.index("{"):])
        registration = result["families"][0]["registration"]
        assert registration is not None and registration["name"] == "genlib-ae-digits", run.stderr[-3000:]
        listed = genlib(["registry", "list", "--json"], clients, timeout=300)
        assert listed.returncode == 0, listed.stderr[-2000:]
        versions = next(m for m in json.loads(listed.stdout) if m["name"] == "genlib-ae-digits")["versions"]
        assert [v["version"] for v in versions] == [registration["version"]]
        # The pipeline's flow run is on the locked Prefect server.
        seen = urllib.request.Request(f"http://127.0.0.1:{pp}/api/flow_runs/filter", data=b"{}",
                                      headers={"Content-Type": "application/json", "Authorization": "Basic " +
                                               base64.b64encode(":".join(prefect_user).encode()).decode()})
        with urllib.request.urlopen(seen, timeout=10) as r:
            assert any(fr["name"] and fr["state_type"] == "COMPLETED" for fr in json.loads(r.read()))
    finally:
        down = genlib(["stack", "down"], env)
    assert down.returncode == 0
