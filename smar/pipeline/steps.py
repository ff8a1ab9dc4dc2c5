"""The pipeline's steps, in order: one function each, called by every orchestrator.

Each takes the config and the `Paths` layout, writes its outputs to files, and returns a
small JSON-friendly result. The CLI (and so `dvc.yaml`) and the Prefect flow call these.
"""

from smar.data.validate import validate
from smar.evaluation.evaluate import evaluate
from smar.registry.register import register
from smar.retrieval.export import export
from smar.retrieval.index import build_index
from smar.training.loop import train

__all__ = ["validate", "train", "export", "build_index", "evaluate", "register"]
