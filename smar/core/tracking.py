"""Tracking: where a pipeline run's parameters, metrics, tags and artifacts go.

Steps receive a `Tracker`, or None to track nothing (a step then runs, and is tested,
without a tracking store). `MlflowTracker` is the implementation the orchestrators pass:
the project's SQLite store by default, or the server $MLFLOW_TRACKING_URI names.

One MLflow run holds a pipeline run's whole lineage: `train` starts it and records its id
beside the model (`run.json`); `evaluate` and `register` log into that same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

from smar.core.errors import MissingInputError, TrackingUnavailable
from smar.core.paths import ModelFiles

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
EXPERIMENT = "smar"


class Tracker(Protocol):
    def start_run(self, name: str, tags: dict[str, str]) -> str:
        """A new run; returns its id."""

    def log_params(self, run_id: str, params: dict[str, object]) -> None: ...

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None: ...

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None: ...

    def log_artifacts(self, run_id: str, directory: Path, artifact_path: str) -> None: ...

    def end_run(self, run_id: str, failed: bool = False) -> None: ...


class MlflowTracker:
    """A `Tracker` over MLflow's client, in experiment `smar` of the configured store."""

    def __init__(self):
        mlflow = configure()
        self.client = mlflow.MlflowClient()
        self.experiment_id = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id

    def start_run(self, name: str, tags: dict[str, str]) -> str:
        from mlflow.tracking.context.registry import resolve_tags

        return self.client.create_run(self.experiment_id, run_name=name, tags=resolve_tags(tags)).info.run_id

    def log_params(self, run_id: str, params: dict[str, object]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(key, str(value)) for key, value in params.items()])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id, metrics=[Metric(key, float(value), now, step or 0) for key, value in metrics.items()]
        )

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    def log_artifacts(self, run_id: str, directory: Path, artifact_path: str) -> None:
        self.client.log_artifacts(run_id, str(directory), artifact_path)

    def end_run(self, run_id: str, failed: bool = False) -> None:
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


def configure():
    """Point MLflow at the project's store (or $MLFLOW_TRACKING_URI) and return the module."""
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    artifact_location = None
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        artifact_location = (database.parent / "artifacts").resolve().as_uri()
    mlflow.set_tracking_uri(uri)
    if _experiment(mlflow, uri) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location)
    mlflow.set_experiment(EXPERIMENT)
    return mlflow


def _experiment(mlflow, uri: str):
    """Experiment `smar`, or None; the first request to the store, so an unreachable server is reported here."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.get_experiment_by_name(EXPERIMENT)
    except MlflowException as error:
        if not uri.startswith(("http://", "https://")):
            raise
        first_line = str(error).strip().splitlines()[0][:300]
        raise TrackingUnavailable(
            f"the MLflow tracking server at {uri} did not answer ({first_line}). "
            "Check that it is up and that MLFLOW_TRACKING_URI names it."
        ) from error


def lineage_tags(data_version: dict[str, str]) -> dict[str, str]:
    """The data version (`data.*`, with `data.rev` when a flow run picked one), the git commit and, under
    Prefect, the flow run."""
    tags = {f"data.{key}": value for key, value in data_version.items()}
    tags["git.commit"] = _git_commit()
    if "prefect" in sys.modules:  # only ask Prefect when we run inside it
        from prefect.runtime import flow_run

        if flow_run.id:
            tags["prefect.flow_run_id"] = str(flow_run.id)
            tags["prefect.flow_run_name"] = str(flow_run.name)
            if flow_run.parameters.get("data_rev"):
                tags["data.rev"] = str(flow_run.parameters["data_rev"])  # the revision of data.dvc the run materialised
    return tags


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(params: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def save_run_id(model_dir: Path, run_id: str) -> None:
    ModelFiles(Path(model_dir)).run.write_text(json.dumps({"run_id": run_id}) + "\n")


def run_id_of(model_dir: Path) -> str:
    path = ModelFiles(Path(model_dir)).run
    if not path.is_file():
        raise MissingInputError(
            f"{path}: missing; the model was trained without tracking, or not by `smar train`. Run `smar train` first."
        )
    return json.loads(path.read_text())["run_id"]
