"""Where each step reads and writes. Every orchestrator uses this one layout."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from smar.core.errors import MissingInputError


@dataclass(frozen=True)
class Paths:
    data: Path = Path("data")
    outputs: Path = Path("outputs")

    @property
    def validation_report(self) -> Path:
        return self.outputs / "validation" / "report.json"

    @property
    def model_dir(self) -> Path:
        return self.outputs / "model"

    @property
    def checkpoint_dir(self) -> Path:
        """Training state while training runs; removed when it finishes."""
        return self.outputs / "checkpoint"

    @property
    def cache_dir(self) -> Path:
        """Decoded images, reused by every training and export of the same catalog."""
        return self.outputs / "cache"

    @property
    def embeddings_dir(self) -> Path:
        return self.outputs / "embeddings"

    @property
    def index_dir(self) -> Path:
        return self.outputs / "index"

    @property
    def evaluation_dir(self) -> Path:
        return self.outputs / "evaluation"

    @property
    def metrics_file(self) -> Path:
        return self.evaluation_dir / "metrics.json"

    @property
    def recall_curve_file(self) -> Path:
        return self.evaluation_dir / "recall_at_k.csv"

    @property
    def per_query_file(self) -> Path:
        return self.evaluation_dir / "per_query.parquet"

    @property
    def recall_plot_file(self) -> Path:
        return self.evaluation_dir / "recall_at_k.png"

    @property
    def registration_file(self) -> Path:
        return self.outputs / "registration.json"


def require(path: Path, step: str) -> Path:
    """`path` must exist: it is written by `smar <step>`."""
    if not Path(path).exists():
        raise MissingInputError(f"{path}: missing. Run `smar {step}` first, or `smar pipeline` for the whole chain.")
    return path


@contextlib.contextmanager
def replace_on_success(target: Path):
    """Yield a scratch directory that replaces `target` only if the block succeeds.

    A failed step therefore never leaves a half-written output where the last good one was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    publish(scratch, target)


def publish(scratch: Path, target: Path) -> None:
    """Put the finished directory `scratch` where `target` is, replacing the old one in one rename."""
    old = target.with_name(f".{target.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(scratch, target)
    shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(text)
    os.replace(scratch, path)
