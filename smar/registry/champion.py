"""The first step of a reindex: the registry champion's trained towers, fetched into `outputs/model`.

A catalog changes every day (new items, removed items) while the towers that encode it stay
good for much longer. `fetch_champion` puts the champion's saved model (weights, tokenizer,
query tower, the record of its training queries) where `train` would have written one, in a
new tracked run tagged with the catalog it will index (`reindex.from_version`); export, index,
evaluate and register then run on the new catalog as after a training, through the same gate.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from smar.core.config import SmarConfig
from smar.core.errors import ConfigError, SmarError
from smar.core.paths import Paths, replace_on_success
from smar.core.tracking import Tracker, lineage_tags, save_run_id
from smar.data.dataset import data_version
from smar.model.checkpoint import saved_config
from smar.registry.promotion import CHAMPION, current_champion


def fetch_champion(config: SmarConfig, paths: Paths, tracker: Tracker | None = None) -> dict:
    """The champion's saved model into `paths.model.root`, with a new tracked run for the reindex."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    if tracker is None:
        raise ConfigError(
            "fetch_champion reads the MLflow model registry: run it with a tracker (the CLI and the flow pass one)."
        )
    name = config.register_.model_name
    version = current_champion(MlflowClient(), name)
    if version is None:
        raise SmarError(
            f"{name} has no {CHAMPION}: there are no trained towers to reindex with. Run `smar pipeline` first."
        )
    with tempfile.TemporaryDirectory(prefix="smar-champion-") as download:
        fetched = (
            Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=download))
            / "artifacts"
            / "model"
        )
        kind = saved_config(fetched).kind
        with replace_on_success(paths.model.root) as scratch:
            shutil.copytree(fetched, scratch, dirs_exist_ok=True)
            tags = lineage_tags(data_version(paths.data)) | {"reindex.from_version": version, "model.kind": kind}
            run_id = tracker.start_run(f"reindex-{kind}-{time.strftime('%Y%m%d-%H%M%S')}", tags)
            save_run_id(scratch, run_id)  # evaluate and register log into the reindex's run
    tracker.end_run(run_id)
    return {"model_dir": str(paths.model.root), "run_id": run_id, "from_version": version, "kind": kind}
