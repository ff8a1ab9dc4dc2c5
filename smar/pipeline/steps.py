"""The pipeline's steps, in order: one function each, called by every orchestrator.

Every step has one shape, `Step`: it reads the config and the files earlier steps wrote
(smar.core.paths.Paths), writes its outputs to files, and returns a small JSON-friendly
summary. `tracker` (smar.core.tracking) receives what the step records; with None nothing is
tracked. train, evaluate and register record (register's job is the MLflow registry, so it
needs one); validate, featurize, export and index record nothing. A reindex runs `fetch_champion` (the
registry champion's towers, in a new tracked run) in place of train. The CLI (and so
dvc.yaml) and the Prefect flows call these, through `run_step`.
"""

from __future__ import annotations

from typing import Protocol

from smar.core.config import SmarConfig
from smar.core.paths import Paths
from smar.core.tracking import Tracker
from smar.data.validation import validate
from smar.evaluation.evaluate import evaluate
from smar.features.step import featurize
from smar.registry.champion import fetch_champion
from smar.registry.register import register
from smar.retrieval.export import export
from smar.retrieval.index import build_index
from smar.training.loop import train


class Step(Protocol):
    def __call__(self, config: SmarConfig, paths: Paths, tracker: Tracker | None = None) -> dict | None:
        """Run on `paths`; the summary (None only from a training rank other than 0)."""


STEPS: dict[str, Step] = {
    "validate": validate,
    "featurize": featurize,
    "train": train,
    "fetch_champion": fetch_champion,  # a reindex's step in place of train: the champion's towers
    "export": export,
    "index": build_index,
    "evaluate": evaluate,
    "register": register,
}
TRACKED = ("train", "fetch_champion", "evaluate", "register")


def run_step(name: str, config: SmarConfig, paths: Paths) -> dict | None:
    """Run step `name` with the MLflow tracker when it records anything (None: a training rank other than 0)."""
    from smar.core.tracking import MlflowTracker

    tracker = MlflowTracker() if name in TRACKED else None
    return STEPS[name](config, paths, tracker)
