"""The production topology, started once for the tests in this folder: PostgreSQL, an MLflow
tracking server on it, a Prefect server on it, and a process work pool (tests/servers.py)."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT
from tests.servers import BIN, Service, create_database, run_cli, start_mlflow, start_postgres, start_prefect

POOL = "smar"


@dataclass
class Topology:
    postgres_dsn: str
    mlflow: Service
    prefect: Service
    root: Path

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
    services = []
    try:
        postgres, dsn = start_postgres(logs)
        services.append(postgres)
        mlflow_db = create_database(dsn, "mlflow")
        prefect_db = create_database(dsn, "prefect").replace("postgresql://", "postgresql+asyncpg://")
        services.append(mlflow := start_mlflow(mlflow_db, root / "mlflow", logs))
        services.append(prefect := start_prefect(prefect_db, root / "prefect-server", logs))
        run_cli([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process"], {"PREFECT_API_URL": prefect.url, "PREFECT_HOME": str(root / "cli")})
        yield Topology(dsn, mlflow, prefect, root)
    finally:
        for service in reversed(services):
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
