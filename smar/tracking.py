"""MLflow wiring: where runs go, what every run is tagged with, one run per pipeline run.

`train` opens the run and records its id next to the checkpoint (`run.json`); the later
steps (evaluate, register) log into that same run, so one run holds the whole lineage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from smar.errors import MissingInputError

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
EXPERIMENT = "smar"
RUN_FILE = "run.json"


def configure():
    """Point MLflow at the project's store (or $MLFLOW_TRACKING_URI) and return the module."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    artifact_location = None
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        artifact_location = (database.parent / "artifacts").resolve().as_uri()
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location)
    mlflow.set_experiment(EXPERIMENT)
    return mlflow


def run_tags(data_dir: Path) -> dict[str, str]:
    """git commit, DVC data hash and, under Prefect, the flow-run id."""
    from smar.data.dataset import data_version

    tags = {f"data.{key}": value for key, value in data_version(data_dir).items()}
    tags["git.commit"] = _git_commit()
    if "prefect" in sys.modules:  # only ask Prefect when we run inside it
        from prefect.runtime import flow_run

        if flow_run.id:
            tags["prefect.flow_run_id"] = str(flow_run.id)
            tags["prefect.flow_run_name"] = str(flow_run.name)
    return tags


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
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
    (Path(model_dir) / RUN_FILE).write_text(json.dumps({"run_id": run_id}) + "\n")


def run_id_of(model_dir: Path) -> str:
    path = Path(model_dir) / RUN_FILE
    if not path.is_file():
        raise MissingInputError(f"{path}: missing; the checkpoint was not written by `smar train`. Run `smar train` first.")
    return json.loads(path.read_text())["run_id"]
