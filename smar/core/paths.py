"""Where each step reads and writes: every output's name, in one place. Every orchestrator uses
this one layout, and dvc.yaml's outputs are held against it (tests/code/test_paths.py).

`Paths(data, outputs)` names the directories; each step's directory has its own set of file
names (`paths.index.id_map`), which also name the files of a copy elsewhere, such as the
model and index directories inside a registered version (`IndexFiles(downloaded).id_map`).
Scratch state that no later step reads (the training checkpoint, the decoded-image cache) keeps
its own names beside the code that writes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from smar.core.errors import MissingInputError


@dataclass(frozen=True)
class ValidationFiles:
    """`smar validate`: the report `train` checks, and Great Expectations' HTML data docs."""

    root: Path

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    @property
    def data_docs(self) -> Path:
        return self.root / "data_docs"


@dataclass(frozen=True)
class FeatureFiles:
    """`smar featurize`: the frozen encoders' outputs, in shards (smar.features.store), and their manifest."""

    root: Path

    @property
    def manifest(self) -> Path:
        """The settings, the dataset they belong to, and the shards of each part, in row order."""
        return self.root / "features.json"

    def shard(self, name: str) -> Path:
        return self.root / name


@dataclass(frozen=True)
class ModelFiles:
    """`smar train` (or a reindex's fetch of the champion): a saved model."""

    root: Path

    @property
    def weights(self) -> Path:
        return self.root / "weights.pt"

    @property
    def config(self) -> Path:
        return self.root / "model_config.json"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer.json"

    @property
    def query_onnx(self) -> Path:
        """The query tower as ONNX, which serving encodes queries with."""
        return self.root / "query_encoder.onnx"

    @property
    def trained_queries(self) -> Path:
        """The ids of the queries the model trained on (the gate leaves them out)."""
        return self.root / "trained_queries.json"

    @property
    def run(self) -> Path:
        """The id of the tracked run that evaluate and register log into."""
        return self.root / "run.json"


@dataclass(frozen=True)
class EmbeddingFiles:
    """`smar export`: one embeddings file per served item view, rows in items.parquet order."""

    root: Path

    def vectors(self, view: str) -> Path:
        return self.root / f"item_embeddings.{view}.npy"

    def views(self) -> list[str]:
        return _views(self.root, self.vectors("*").name)

    @property
    def item_ids(self) -> Path:
        return self.root / "item_ids.parquet"

    @property
    def tuning_queries(self) -> Path:
        """Vectors of training queries that the index step tunes an approximate search against."""
        return self.root / "tuning_queries.npy"

    @property
    def summary(self) -> Path:
        return self.root / "export.json"


@dataclass(frozen=True)
class IndexFiles:
    """`smar index`: one FAISS index per served view, and the map back to the catalog's ids."""

    root: Path

    def faiss(self, view: str) -> Path:
        return self.root / f"items.{view}.faiss"

    def views(self) -> list[str]:
        return _views(self.root, self.faiss("*").name)

    @property
    def id_map(self) -> Path:
        return self.root / "id_map.parquet"

    @property
    def build(self) -> Path:
        """The index type, its tuning and build time."""
        return self.root / "build.json"

    @property
    def thumbnails(self) -> Path:
        """Small JPEGs of the items' images, served by the search page (smar.retrieval.thumbnails)."""
        return self.root / "thumbnails.bin"


@dataclass(frozen=True)
class EvaluationFiles:
    """`smar evaluate`: the metrics, the recall curve and per-query results."""

    root: Path

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def recall_curve(self) -> Path:
        return self.root / "recall_at_k.csv"

    @property
    def recall_plot(self) -> Path:
        return self.root / "recall_at_k.png"

    @property
    def per_query(self) -> Path:
        return self.root / "per_query.parquet"


@dataclass(frozen=True)
class Paths:
    data: Path = Path("data")
    outputs: Path = Path("outputs")

    @property
    def validation(self) -> ValidationFiles:
        return ValidationFiles(self.outputs / "validation")

    @property
    def features(self) -> FeatureFiles:
        return FeatureFiles(self.outputs / "features")

    @property
    def model(self) -> ModelFiles:
        return ModelFiles(self.outputs / "model")

    @property
    def embeddings(self) -> EmbeddingFiles:
        return EmbeddingFiles(self.outputs / "embeddings")

    @property
    def index(self) -> IndexFiles:
        return IndexFiles(self.outputs / "index")

    @property
    def evaluation(self) -> EvaluationFiles:
        return EvaluationFiles(self.outputs / "evaluation")

    @property
    def registration(self) -> Path:
        """`smar register`: the version registered and the gate's decision."""
        return self.outputs / "registration.json"

    @property
    def checkpoint_dir(self) -> Path:
        """Training state while training runs; removed when it finishes."""
        return self.outputs / "checkpoint"

    @property
    def cache_dir(self) -> Path:
        """Decoded images for an image tower that trains its backbone, reused by every run on the same catalog."""
        return self.outputs / "cache"

    @property
    def datasets_dir(self) -> Path:
        """Dataset versions a run picked by `data_rev`, materialised with DVC."""
        return self.outputs / "datasets"


def _views(directory: Path, pattern: str) -> list[str]:
    """The views of the files matching `pattern` (`prefix.*.suffix`) in `directory`, sorted."""
    return sorted(path.name.split(".")[1] for path in Path(directory).glob(pattern))


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
