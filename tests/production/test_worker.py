"""A run triggered with `prefect deployment run --param`, executed by a worker from a process
work pool, tracked on the MLflow server (PostgreSQL behind it), served by `smar serve`."""

import httpx
import pytest

from smar.registry.promotion import history
from tests.production.conftest import POOL, WORKER_MODEL
from tests.servers import http_ok, start_smar_serve, wait_until

pytestmark = pytest.mark.slow
MODEL_NAME = WORKER_MODEL


def test_the_worker_runs_the_deployment_to_completion(worker_run, topology):
    assert worker_run["state"]["type"] == "COMPLETED", worker_run["state"]
    with topology.prefect_api() as api:
        tasks = (
            api.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [worker_run["id"]]}}})
            .raise_for_status()
            .json()
        )
    assert {task["name"].rsplit("-", 1)[0] for task in tasks if task["state"]["type"] == "COMPLETED"} >= {
        "validate",
        "train",
        "index",
        "evaluate",
        "register",
    }


def test_the_run_and_its_version_are_on_the_tracking_server(worker_run, topology, tiny_params):
    import yaml

    client = topology.client()
    [run] = client.search_runs(
        [client.get_experiment_by_name("smar").experiment_id], f"tags.`prefect.flow_run_id` = '{worker_run['id']}'"
    )
    assert (run.data.params["train.epochs"], run.data.params["train.weight_decay"]) == ("2", "0.03")  # --param
    file_lr = yaml.safe_load(tiny_params.read_text())["train"]["learning_rate"]
    assert float(run.data.params["train.learning_rate"]) == file_lr  # the file's value where the form was silent
    made = client.search_model_versions(
        f"name='{MODEL_NAME}' and run_id='{run.info.run_id}'"
    )  # (the outage tests register it again)
    first = min(
        made, key=lambda version: int(version.version)
    )  # lineage: the registry's first version came from this flow run
    assert first.version == "1" and first.tags["gate.decision"] == "promoted" and int(first.tags["gate.queries"]) > 0
    assert "gate: promoted" in first.description and first.tags["smar.state"] == "registered"
    first_move = history(client, MODEL_NAME)[0]  # the alias: the gate made version 1 champion
    assert (first_move["version"], first_move["previous_champion"], first_move["by"]) == ("1", None, "gate")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "evaluation" in artifacts  # proxied through the tracking server, not a path on the worker


@pytest.mark.parametrize(
    "deployment, cron",
    [("smar-reindex/nightly", "0 2 * * *"), ("smar-learn/weekly", "0 3 * * 1"), ("smar-promote/hourly", "15 * * * *")],
)
def test_the_scheduled_deployments_are_deployed_with_their_schedules_off(worker_run, topology, deployment, cron):
    with topology.prefect_api() as api:
        deployed = api.get(f"/deployments/name/{deployment}").raise_for_status().json()
    assert deployed["work_pool_name"] == POOL
    [schedule] = deployed["schedules"]
    assert schedule["schedule"]["cron"] == cron and schedule["active"] is False


def test_smar_serve_answers_from_the_new_champion(worker_run, worker_host, topology, tmp_path):
    directory, _ = worker_host
    env = topology.host_env(tmp_path / "serve-home")
    service = start_smar_serve(directory / "params.yaml", env, topology.root / "logs")
    try:
        wait_until(lambda: http_ok(f"{service.url}/readyz"), service, timeout=180, what="serving a model")
        version = topology.client().get_model_version_by_alias(MODEL_NAME, "champion").version
        assert httpx.get(f"{service.url}/version").json()["model_version"] == str(version)
        answer = httpx.post(f"{service.url}/search", json={"query": "red cotton shirt", "k": 5}, timeout=30).json()
        assert len(answer["results"]) == 5
    finally:
        service.stop()
