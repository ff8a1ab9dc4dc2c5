"""Step 2, featurize: the frozen encoders over the catalog and the training queries, once, in shards.

With `model.pretrained: frozen` (the default) MiniLM and the ImageNet backbone never change,
so what they compute is a function of the texts and images alone. This step computes it into
`outputs/features` (smar.core.paths.FeatureFiles) for train, export, a reindex and the
zero-shot baseline to read; nothing else runs the frozen encoders again.

The work is cut into shards of `featurize.shard_items` rows per part (item texts, item images,
training queries). A shard's name holds a key of its inputs (its rows' texts, or its images'
paths, sizes and modification times), of the encoder (weights, tokenizer, text length or
image size) and of the shards' layout (`store.FORMAT`), so an unchanged shard is reused and
a changed one recomputed, never read stale.
`start_featurize` plans the shards, `featurize_shard` computes one (writing it under a scratch
name, renamed into place when complete) and `finish_featurize` writes the manifest once all
are there and removes shards no longer listed. `featurize` runs the three in order; the
Prefect flow maps `featurize_shard` over the shards on its task runner (threads, Dask or Ray:
the `cluster` settings), on the GPU of a worker that has one. A run killed half-way resumes
from its finished shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from smar.core.config import ModelConfig, SmarConfig
from smar.core.contract import ITEMS, QRELS, QUERIES
from smar.core.errors import MissingInputError
from smar.core.paths import FeatureFiles, Paths, write_text_atomic
from smar.core.progress import Progress
from smar.core.tracking import Tracker
from smar.features import store

log = logging.getLogger(__name__)

ITEM_TEXT, ITEM_IMAGE, QUERY_TEXT = "text", "image", "query"


@dataclass(frozen=True)
class Shard:
    part: str  # ITEM_TEXT, ITEM_IMAGE or QUERY_TEXT
    start: int  # rows [start, end) of the items, or of the training queries
    end: int
    key: str  # of the rows' inputs and the encoder

    @property
    def name(self) -> str:
        return f"{self.part}-{self.start:09d}-{self.key}"


def featurize(config: SmarConfig, paths: Paths, tracker: Tracker | None = None) -> dict:
    shards = start_featurize(config, paths)
    return finish_featurize(config, paths, [featurize_shard(config, paths, shard) for shard in shards])


def parts(config: SmarConfig, has_image_features: bool) -> list[str]:
    """What the run reads of the frozen encoders: item texts for a frozen text tower and for the
    zero-shot baseline, training queries for a frozen query tower, images for a frozen backbone."""
    from smar.model.kinds import uses_images

    model, needed = config.model, []
    if model.frozen_text or config.evaluate.zero_shot_baseline:
        needed.append(ITEM_TEXT)
    if model.frozen_image and uses_images(model) and not has_image_features:
        needed.append(ITEM_IMAGE)
    if model.frozen_text:
        needed.append(QUERY_TEXT)
    return needed


def start_featurize(config: SmarConfig, paths: Paths) -> list[Shard]:
    """Every shard of the run's parts, keyed by its inputs (reused ones included: they cost nothing)."""
    from smar.data.dataset import load_dataset
    from smar.data.validation import require_passed
    from smar.features.encoders import image_encoder_key, text_encoder_key

    require_passed(paths)
    dataset = load_dataset(paths.data)
    size, shards = config.featurize.shard_items, []
    for part in parts(config, dataset.image_features_file is not None):
        if part == ITEM_IMAGE:
            inputs, encoder = _image_stats(paths.data, _image_paths(paths.data)), image_encoder_key(config.model)
        else:
            inputs = _item_texts(paths.data) if part == ITEM_TEXT else _query_texts(paths.data)
            encoder = text_encoder_key(config.model) + (config.model.text_pooling if part == QUERY_TEXT else "")
        for start in range(0, len(inputs), size):
            digest = hashlib.sha256(f"{store.FORMAT}\0{part}\0{encoder}\0".encode())
            for value in inputs[start : start + size]:
                digest.update(value.encode("utf-8", "surrogatepass") + b"\0")
            shards.append(Shard(part, start, min(start + size, len(inputs)), digest.hexdigest()[:16]))
    return shards


def featurize_shard(config: SmarConfig, paths: Paths, shard: Shard) -> dict:
    """Compute one shard, unless an earlier run already did (same inputs, same encoder)."""
    from smar.model.inference import resolve_device

    directory = paths.features.shard(shard.name)
    result = {"name": shard.name, "part": shard.part, "rows": shard.end - shard.start}
    if directory.is_dir():
        return result | {"computed": False, "bytes": _size(directory), "seconds": 0.0}
    started, device = time.perf_counter(), resolve_device(config.featurize.device)
    with Progress(f"featurize {shard.part} {shard.start}-{shard.end}", shard.end - shard.start, shard.part) as progress:
        if shard.part == ITEM_IMAGE:
            arrays = _image_shard(config, paths.data, shard, device, progress)
        else:
            texts = (_item_texts if shard.part == ITEM_TEXT else _query_texts)(paths.data)[shard.start : shard.end]
            arrays = _text_shard(config, texts, shard.part == QUERY_TEXT, device, progress)
    written = store.write_shard(directory, arrays)
    seconds = time.perf_counter() - started
    log.info(
        "featurize %s: %d rows in %.1f s (%.0f/s) on %s",
        shard.name,
        result["rows"],
        seconds,
        result["rows"] / seconds,
        device,
    )
    return result | {"computed": True, "bytes": written, "seconds": round(seconds, 3)}


def finish_featurize(config: SmarConfig, paths: Paths, results: list[dict]) -> dict:
    """Write the manifest once every shard is there; remove the shards it no longer lists."""
    files = paths.features
    missing = [result["name"] for result in results if not files.shard(result["name"]).is_dir()]
    if missing:
        raise RuntimeError(f"{files.root}: feature shards {missing} are missing; run `smar featurize` again.")
    items = _count_rows(paths.data / ITEMS)
    by_part = {part: [r for r in results if r["part"] == part] for part in dict.fromkeys(r["part"] for r in results)}
    item_bytes = sum(r["bytes"] for r in results if r["part"] != QUERY_TEXT)
    manifest = {
        "settings": {part: _settings(config.model)[part] for part in by_part},
        "data": _data_hashes(paths.data),
        "parts": {part: [r["name"] for r in shard_results] for part, shard_results in by_part.items()},
        "bytes": {part: sum(r["bytes"] for r in shard_results) for part, shard_results in by_part.items()},
        "item_bytes_per_item": round(item_bytes / items, 1) if items else 0.0,
    }
    write_text_atomic(files.manifest, json.dumps(manifest, indent=2) + "\n")
    listed = {result["name"] for result in results}
    for stale in files.root.iterdir():  # older shards of the parts this run reads, and a killed run's scratch
        part = stale.name.split("-", 1)[0]
        if stale.is_dir() and stale.name not in listed and (stale.name.startswith(".") or part in by_part):
            shutil.rmtree(stale, ignore_errors=True)
    computed = [r for r in results if r["computed"]]
    summary = {
        "shards": len(results),
        "computed": len(computed),
        "reused": len(results) - len(computed),
        "seconds": round(sum(r["seconds"] for r in computed), 3),
        "item_bytes_per_item": manifest["item_bytes_per_item"],
        "parts": {
            part: {
                "rows": sum(r["rows"] for r in shard_results),
                "computed_rows": sum(r["rows"] for r in shard_results if r["computed"]),
                "seconds": round(sum(r["seconds"] for r in shard_results), 3),
                "bytes": manifest["bytes"][part],
            }
            for part, shard_results in by_part.items()
        },
    }
    log.info(
        "featurize: %d shards (%d computed, %d reused), %s bytes per item",
        summary["shards"],
        summary["computed"],
        summary["reused"],
        summary["item_bytes_per_item"],
    )
    return summary | {"features_dir": str(files.root)}


@dataclass
class Features:
    """What a run reads of the frozen encoders (None: a part the run does not use)."""

    item_text: store.ItemTextFeatures | None
    item_image: store.ItemImageFeatures | None
    queries: store.QueryFeatures | None  # the training queries, in split order


def load_features(paths: Paths, model: ModelConfig, parts_read: tuple[str, ...] | None = None) -> Features:
    """The features `smar featurize` wrote for this dataset and these model settings (of the
    parts in `parts_read` only, default all: the zero-shot baseline reads only item texts)."""
    files: FeatureFiles = paths.features
    if not files.manifest.is_file():
        raise MissingInputError(
            f"{files.manifest}: missing. Run `smar featurize` first, or `smar pipeline` for the whole chain."
        )
    manifest = json.loads(files.manifest.read_text())
    shards = {
        part: [files.shard(name) for name in names]
        for part, names in manifest["parts"].items()
        if parts_read is None or part in parts_read
    }
    wanted, stored = _settings(model), manifest["settings"]
    stale = [
        name
        for name, changed in {
            "the dataset": _data_hashes(paths.data) != manifest["data"],
            "the model settings": any(wanted[part] != stored.get(part) for part in shards),
        }.items()
        if changed
    ]
    if stale:
        raise MissingInputError(
            f"{files.manifest}: the features were computed for another version of {' and '.join(stale)}. "
            f"Run `smar featurize` (it recomputes only the shards that changed)."
        )
    return Features(
        item_text=store.ItemTextFeatures(shards[ITEM_TEXT]) if ITEM_TEXT in shards else None,
        item_image=store.ItemImageFeatures(shards[ITEM_IMAGE]) if ITEM_IMAGE in shards else None,
        queries=store.QueryFeatures(shards[QUERY_TEXT]) if QUERY_TEXT in shards else None,
    )


def _text_shard(config: SmarConfig, texts: list[str], pooled: bool, device: str, progress: Progress) -> dict:
    """Queries: their pooled vectors. Item texts: their token states, quantized batch by batch (a
    shard's float32 states would take four times the memory)."""
    import numpy as np

    from smar.features.encoders import encode_texts

    width = config.model.text_hidden_size  # MiniLM's 384
    vectors, per_text = np.zeros((len(texts), width), dtype=np.float32), [None] * len(texts)
    for rows, states, lengths in encode_texts(config.model, texts, device, config.featurize.batch_size):
        if pooled:
            mask = np.arange(states.shape[1])[None, :] < lengths[:, None]
            mean = (states * mask[..., None]).sum(1) / lengths[:, None]
            vectors[rows] = states[:, 0] if config.model.text_pooling == "cls" else mean
        else:
            tokens, scales = store.quantize(states)
            for row, row_tokens, row_scales, length in zip(rows, tokens, scales, lengths):
                per_text[row] = (row_tokens[:length], row_scales[:length])
        progress.advance(len(rows))
    if pooled:
        tokens, scales = store.quantize(vectors)
        return {store.TOKENS: tokens, store.SCALES: scales}
    return {
        store.TOKENS: np.concatenate([tokens for tokens, _ in per_text] or [np.zeros((0, width), np.int8)]),
        store.SCALES: np.concatenate([scales for _, scales in per_text] or [np.zeros(0, np.float16)]),
        store.LENGTHS: np.array([len(scales) for _, scales in per_text], dtype=np.int16),
    }


def _image_shard(config: SmarConfig, data_dir: Path, shard: Shard, device: str, progress: Progress) -> dict:
    import numpy as np

    from smar.data.image_cache import decode_images
    from smar.features.encoders import encode_images

    image_paths, batch = _image_paths(data_dir)[shard.start : shard.end], config.featurize.batch_size
    tokens, scales = [], []
    for first in range(0, len(image_paths), batch):
        pixels = decode_images(image_paths[first : first + batch], config.model.image_size)
        quantized = store.quantize(encode_images(config.model, pixels, device, len(image_paths)))
        tokens.append(quantized[0])
        scales.append(quantized[1])
        progress.advance(len(pixels))
    return {store.TOKENS: np.concatenate(tokens), store.SCALES: np.concatenate(scales)}


def _item_texts(data_dir: Path) -> list[str]:
    import pyarrow.parquet as pq

    from smar.core.contract import ITEM_TEXT_COLUMNS, item_texts

    return item_texts(pq.read_table(data_dir / ITEMS, columns=list(ITEM_TEXT_COLUMNS)).to_pydict())


def _query_texts(data_dir: Path) -> list[str]:
    """The training queries' texts, in the order train reads them (Dataset.split_queries)."""
    from smar.data.dataset import load_dataset

    return load_dataset(data_dir).split_queries("train")["text"].tolist()


def _image_paths(data_dir: Path) -> list[Path]:
    import pyarrow.parquet as pq

    return [data_dir / image for image in pq.read_table(data_dir / ITEMS, columns=["image"])["image"].to_pylist()]


def _image_stats(data_dir: Path, image_paths: list[Path]) -> list[str]:
    """Per image: its path, size and modification time (a changed file changes its shard's key)."""
    stats = []
    for path in image_paths:
        stat = path.stat()
        stats.append(f"{path.relative_to(data_dir)}\0{stat.st_size}\0{stat.st_mtime_ns}")
    return stats


def _settings(model: ModelConfig) -> dict[str, dict]:
    """Per part, the settings its features depend on (besides the encoder's weights, in the keys)."""
    text = {"format": store.FORMAT, "max_text_length": model.max_text_length}
    return {
        ITEM_TEXT: text,
        ITEM_IMAGE: {"format": store.FORMAT, "image_size": model.image_size, "image_stage": model.image_stage},
        QUERY_TEXT: text | {"text_pooling": model.text_pooling},
    }


def _data_hashes(data_dir: Path) -> dict[str, str]:
    """Of the files the features are computed from (qrels.parquet holds the splits, and so which
    queries are the training queries)."""
    hashes = {}
    for name in (ITEMS, QUERIES, QRELS):
        digest = hashlib.sha256()
        with open(data_dir / name, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        hashes[name] = digest.hexdigest()
    return hashes


def _count_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.iterdir())
