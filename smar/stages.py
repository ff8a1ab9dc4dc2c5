"""The pipeline's steps, in order: one function each, called by every orchestrator.

Each takes the config and the `Paths` layout, writes its outputs to files, and returns a
small JSON-friendly result. The CLI (and so `dvc.yaml`) and the Prefect flow call these.
"""

from smar.evaluate import evaluate
from smar.export import export
from smar.index import build_index
from smar.register import register
from smar.train import train
from smar.validate import validate

__all__ = ["validate", "train", "export", "build_index", "evaluate", "register"]
