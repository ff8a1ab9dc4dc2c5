"""The tracking server goes away: `smar serve` keeps answering with the model it has and
/readyz says why; a pipeline run fails at the first step that needs the server, after its
retries; a registration cut off part-way leaves no half-registered version."""

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow.exceptions import MlflowException

from smar.core.config import load_config
from smar.core.paths import Paths
from smar.pipeline.steps import run_step
from smar.registry import register as register_step
from tests.production.conftest import WORKER_MODEL
from tests.servers import BIN, http_ok, start_smar_serve, wait_until

pytestmark = pytest.mark.slow


def settings_with(params: Path, directory: Path, **sections) -> Path:
    settings = yaml.safe_load(params.read_text())
    for section, values in sections.items():
        settings[section].update(values)
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_serve_keeps_serving_through_an_outage_and_readyz_says_why(worker_run, worker_host, topology, tmp_path):
    directory, _ = worker_host
    params = settings_with(directory / "params.yaml", tmp_path, serve={"poll_seconds": 1})
    service = start_smar_serve(
        params, topology.host_env(tmp_path / "home"), topology.root / "logs", name="serve-outage"
    )
    readyz, search = f"{service.url}/readyz", f"{service.url}/search"
    try:
        wait_until(lambda: http_ok(readyz), service, timeout=180, what="serving a model")
        with topology.tracking_outage():
            wait_until(
                lambda: "registry" in httpx.get(readyz).json()["problems"],
                service,
                timeout=60,
                what="reporting the outage",
            )
            status = httpx.get(readyz)
            assert status.status_code == 200 and status.json()["ready"]  # it still has a whole model to answer with
            assert "cannot resolve" in status.json()["problems"]["registry"]
            assert len(httpx.post(search, json={"query": "blue shirt", "k": 3}, timeout=30).json()["results"]) == 3
        wait_until(
            lambda: "registry" not in httpx.get(readyz).json()["problems"], service, timeout=120, what="recovered"
        )
    finally:
        service.stop()


def test_a_run_without_the_tracking_server_fails_at_training_after_its_retries(worker_host, topology, tmp_path):
    directory, _ = worker_host
    params = settings_with(directory / "params.yaml", tmp_path, train={"retries": 1})
    outputs = tmp_path / "outputs"
    env = topology.host_env(tmp_path / "home") | {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    with topology.tracking_outage():
        done = subprocess.run(
            [
                str(BIN / "smar"),
                "pipeline",
                "--params",
                str(params),
                "--data",
                str(directory / "data"),
                "--out",
                str(outputs),
            ],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 1
    assert f"the MLflow tracking server at {topology.mlflow.url} did not answer" in done.stderr
    assert json.loads(Paths(outputs=outputs).validation.report.read_text())["success"]  # validation needs no server
    assert not Paths(outputs=outputs).model.root.exists() and not Paths(outputs=outputs).registration.exists()
    with topology.prefect_api() as api:
        # the latest run of the pipeline itself, not of its featurize or export subflow
        latest = {"sort": "START_TIME_DESC", "limit": 1, "flows": {"name": {"any_": ["smar-pipeline"]}}}
        [run] = api.post("/flow_runs/filter", json=latest).json()
        tasks = api.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [run["id"]]}}}).json()
    [train] = [task for task in tasks if task["name"].startswith("train")]
    assert (
        run["state"]["type"] == "FAILED" and train["state"]["type"] == "FAILED" and train["run_count"] == 2
    )  # 1 retry


@pytest.fixture
def on_the_tracking_server(topology, monkeypatch):
    """This process's steps tracked on the topology's server (and back on the tests' store after)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", topology.mlflow.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    yield
    monkeypatch.undo()
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])


def test_a_registration_cut_off_by_an_outage_leaves_no_version(
    worker_run, worker_host, topology, on_the_tracking_server, monkeypatch
):
    """The server goes away while the gate measures: the version cannot even be removed then, so
    it stays marked `registering` until the retry removes it and registers a whole one."""
    directory, _ = worker_host
    config, paths = load_config(directory / "params.yaml"), Paths(directory / "data", directory / "outputs")
    client = topology.client()
    before = {v.version for v in client.search_model_versions(f"name='{WORKER_MODEL}'")}
    registration = paths.registration.read_bytes()
    measure = register_step.load_version

    def outage_while_measuring(uri, queries, k):
        topology.stop_tracking()
        return measure(uri, queries, k)

    monkeypatch.setattr(register_step, "load_version", outage_while_measuring)
    try:
        with pytest.raises(MlflowException):
            run_step("register", config, paths)
    finally:
        topology.restart_tracking()
    assert paths.registration.read_bytes() == registration  # the last good registration stands
    [cut_off] = [v for v in client.search_model_versions(f"name='{WORKER_MODEL}'") if v.version not in before]
    assert cut_off.tags["smar.state"] == "registering" and "gate.decision" not in cut_off.tags

    monkeypatch.setattr(register_step, "load_version", measure)
    result = run_step("register", config, paths)  # what the task's retry does
    versions = {v.version: v for v in client.search_model_versions(f"name='{WORKER_MODEL}'")}
    assert cut_off.version not in versions  # removed by the retry
    assert (
        versions[result["version"]].tags["smar.state"] == "registered"
        and "gate.decision" in versions[result["version"]].tags
    )
