"""The production topology, started once for the tests in this folder: PostgreSQL, an MLflow
tracking server on it, a Prefect server on it, and a process work pool (tests/servers.py)."""

import contextlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import PROJECT
from tests.servers import (
    BIN,
    Service,
    create_database,
    run_cli,
    start_mlflow,
    start_postgres,
    start_prefect,
    start_worker,
)

POOL = "smar"
WORKER_MODEL = "worker-end-to-end"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class Topology:
    postgres_dsn: str
    mlflow_backend: str
    mlflow: Service
    prefect: Service
    root: Path

    def stop_tracking(self) -> None:
        """An outage: the MLflow tracking server goes away."""
        self.mlflow.stop()

    def restart_tracking(self) -> None:
        """The tracking server back on the same address, with the same stores."""
        port = int(self.mlflow.url.rsplit(":", 1)[1])
        self.mlflow = start_mlflow(self.mlflow_backend, self.root / "mlflow", self.root / "logs", port=port)

    @contextlib.contextmanager
    def tracking_outage(self):
        self.stop_tracking()
        try:
            yield
        finally:
            self.restart_tracking()

    def host_env(self, home: Path) -> dict[str, str]:
        """The environment of one host of the topology: its own home and Prefect home, the shared servers."""
        home.mkdir(parents=True, exist_ok=True)
        return {
            "HOME": str(home),
            "PREFECT_HOME": str(home / ".prefect"),
            "PREFECT_API_URL": self.prefect.url,
            "MLFLOW_TRACKING_URI": self.mlflow.url,
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.mlflow.url, registry_uri=self.mlflow.url)

    def prefect_api(self):
        import httpx

        return httpx.Client(base_url=self.prefect.url, timeout=30)


@pytest.fixture(scope="session")
def topology(tmp_path_factory):
    root = tmp_path_factory.mktemp("topology")
    logs = root / "logs"
    logs.mkdir()
    services, topology = [], None
    try:
        postgres, dsn = start_postgres(logs)
        services.append(postgres)
        mlflow_db = create_database(dsn, "mlflow")
        prefect_db = create_database(dsn, "prefect").replace("postgresql://", "postgresql+asyncpg://")
        services.append(mlflow := start_mlflow(mlflow_db, root / "mlflow", logs))
        services.append(prefect := start_prefect(prefect_db, root / "prefect-server", logs))
        run_cli(
            [str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process"],
            {"PREFECT_API_URL": prefect.url, "PREFECT_HOME": str(root / "cli")},
        )
        topology = Topology(dsn, mlflow_db, mlflow, prefect, root)
        yield topology
    finally:
        restarted = [topology.mlflow] if topology else []  # the tracking server may have been restarted
        for service in (*restarted, *reversed(services)):
            service.stop()


def checkout(directory: Path, data: Path, params: Path, model_name: str) -> Path:
    """What a worker host holds: the flow's entry point, prefect.yaml, params.yaml and data/."""
    directory.mkdir(parents=True)
    shutil.copytree(PROJECT / "flows", directory / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "prefect.yaml", directory / "prefect.yaml")
    shutil.copytree(data, directory / "data")
    settings = yaml.safe_load(params.read_text())
    settings["register"]["model_name"] = model_name
    (directory / "params.yaml").write_text(yaml.safe_dump(settings))
    return directory


@pytest.fixture(scope="session")
def worker_host(topology, tiny_data, tiny_params, tmp_path_factory):
    """A worker host: its checkout with the deployments applied from prefect.yaml, and a worker polling the pool."""
    host = tmp_path_factory.mktemp("worker-host")
    directory = checkout(host / "checkout", tiny_data, tiny_params, WORKER_MODEL)
    env = topology.host_env(host / "home")
    run_cli([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env, cwd=directory)
    worker = start_worker(POOL, env, directory, topology.root / "logs")
    yield directory, env
    worker.stop()


def run_deployment(env: dict, deployment: str, *params: str) -> str:
    """`prefect deployment run DEPLOYMENT --param NAME=VALUE ...`, as docs/production.md says; the flow run's id."""
    command = [str(BIN / "prefect"), "deployment", "run", deployment, *(f"--param={param}" for param in params)]
    printed = run_cli(command, env)
    return re.search(r"UUID: ([0-9a-f-]{36})", printed).group(1)


def wait_for_run(api: httpx.Client, run_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"/flow_runs/{run_id}").raise_for_status().json()
        if run["state"]["type"] in TERMINAL:
            return run
        time.sleep(2)
    raise TimeoutError(f"flow run {run_id} did not finish in {timeout:.0f} s (state {run['state']['name']})")


@pytest.fixture(scope="session")
def worker_run(topology, worker_host):
    _, env = worker_host
    run_id = run_deployment(env, "smar-pipeline/default", "epochs=2", 'overrides={"train": {"weight_decay": 0.03}}')
    with topology.prefect_api() as api:
        return wait_for_run(api, run_id)
