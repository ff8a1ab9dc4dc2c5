"""Step 3, export: checkpoint + catalog -> item embeddings, one file per served view.

`outputs/embeddings` (`smar.core.paths.EmbeddingFiles`) holds `item_embeddings.<view>.npy`
(float32 [N, D], rows in items.parquet order), `item_ids.parquet`, `tuning_queries.npy` (vectors
of up to 1000 train and valid queries, which the index step tunes its search against) and
`export.json`.

A catalog exports in shards of `export.shard_items` rows, in bounded memory: `start_export`
lays out a staging directory whose embedding files are memory-mapped at full size,
`export_shard` fills its rows batch by batch, and `finish_export` checks that every shard is
done and publishes the directory in one rename (the last good export stays until then).
`export` runs the three in order; the Prefect flow maps `export_shard` over the shards on
its task runner: threads, or a Dask or Ray cluster (`export.task_runner`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from smar.core.config import SmarConfig
from smar.core.contract import ITEMS
from smar.core.errors import MissingInputError
from smar.core.paths import EmbeddingFiles, Paths, publish, require
from smar.core.progress import Progress
from smar.core.tracking import Tracker

log = logging.getLogger(__name__)

MAX_TUNING_QUERIES = 1000


def staging(paths: Paths) -> EmbeddingFiles:
    """Where the shards write, laid out as the export it becomes when every shard is done."""
    published = paths.embeddings.root
    return EmbeddingFiles(published.with_name(f".{published.name}-staging"))


def export(config: SmarConfig, paths: Paths, tracker: Tracker | None = None) -> dict:
    shards = start_export(config, paths)
    return finish_export(config, paths, [export_shard(config, paths, shard) for shard in shards])


def start_export(config: SmarConfig, paths: Paths) -> list[tuple[int, int]]:
    """Lay out the staging directory; return the shards as (first row, end row) pairs."""
    import numpy as np
    import pandas as pd

    from smar.data.dataset import load_dataset
    from smar.model.checkpoint import load_model
    from smar.model.feature_cache import item_images
    from smar.model.inference import encode_texts
    from smar.model.kinds import served_views

    model, tokenizer = load_model(require(paths.model.root, "train"))
    dataset = load_dataset(paths.data)
    items = dataset.items
    # Decoded (and through a frozen backbone) once, before the shards read it; likewise a frozen text encoder's states.
    item_images(model, paths.data, paths.cache_dir)
    if model.item_text_encoder.frozen:
        _item_text(model, tokenizer, paths, 0, len(items))
    files = staging(paths)
    shutil.rmtree(files.root, ignore_errors=True)  # a failed export's leftovers
    files.root.mkdir(parents=True)
    for view in served_views(model.config):
        shape = (len(items), model.config.embedding_dim)
        np.lib.format.open_memmap(files.vectors(view), mode="w+", dtype=np.float32, shape=shape).flush()
    pd.DataFrame({"item_id": items["item_id"].astype(str)}).to_parquet(files.item_ids, index=False)
    queries = pd.concat([dataset.split_queries("train"), dataset.split_queries("valid")]).drop_duplicates("query_id")
    sample = queries.sample(min(MAX_TUNING_QUERIES, len(queries)), random_state=0)["text"].tolist()
    np.save(files.tuning_queries, encode_texts(model, tokenizer, sample).numpy())
    size = config.export.shard_items
    return [(start, min(start + size, len(items))) for start in range(0, len(items), size)]


def export_shard(config: SmarConfig, paths: Paths, shard: tuple[int, int]) -> dict:
    """Encode catalog rows [start, end) into the staging files, a batch at a time."""
    import numpy as np

    from smar.data.image_cache import rows_to_tensor
    from smar.model.checkpoint import load_model
    from smar.model.feature_cache import item_images
    from smar.model.inference import encode_item_batch, resolve_device
    from smar.model.kinds import served_views

    started = time.perf_counter()
    start, end = shard
    files = staging(paths)
    if not files.root.is_dir():
        raise MissingInputError(f"{files.root}: missing. An export shard runs after start_export; run `smar export`.")
    model, tokenizer = load_model(paths.model.root, device=resolve_device(config.export.device))
    views = served_views(model.config)
    text = _item_text(model, tokenizer, paths, start, end)
    lengths = np.asarray(text["attention_mask"]).sum(1)
    images = item_images(model, paths.data, paths.cache_dir)
    outputs = {view: np.load(files.vectors(view), mmap_mode="r+") for view in views}
    order = np.argsort(-lengths, kind="stable")  # batches of similar length: little padding
    with Progress(f"export items {start}-{end}", end - start, "item") as progress:
        for first in range(0, len(order), config.export.batch_size):
            rows = np.sort(order[first : first + config.export.batch_size])
            width = int(lengths[rows].max())
            batch_text = {k: rows_to_tensor(v, rows)[:, :width] for k, v in text.items()}
            pixels = rows_to_tensor(images, start + rows) if images is not None else None
            for view, vectors in encode_item_batch(model, batch_text, pixels, views).items():
                outputs[view][start + rows] = vectors.numpy()
            progress.advance(len(rows))
    for array in outputs.values():
        array.flush()
    seconds = time.perf_counter() - started
    log.info("exported items %d-%d (%.0f items/s)", start, end, (end - start) / seconds if seconds else 0)
    return {"shard": [start, end], "items": end - start, "seconds": round(seconds, 3)}


def _item_text(model, tokenizer, paths: Paths, start: int, end: int) -> dict:
    """The item text tower's inputs for catalog rows [start, end): token ids, or a frozen
    encoder's states from the cache (which covers the whole catalog)."""
    import pyarrow.parquet as pq

    from smar.core.contract import ITEM_TEXT_COLUMNS, item_texts
    from smar.model.feature_cache import text_inputs

    encoder = model.item_text_encoder
    table = pq.read_table(paths.data / ITEMS, columns=list(ITEM_TEXT_COLUMNS))
    if not encoder.frozen:
        table = table.slice(start, end - start)
    texts = item_texts(table.to_pydict())
    inputs = text_inputs(encoder, tokenizer, texts, model.config.max_text_length, paths.cache_dir, "items")
    return inputs if not encoder.frozen else {k: v[start:end] for k, v in inputs.items()}


def finish_export(config: SmarConfig, paths: Paths, shards: list[dict]) -> dict:
    """Publish the staging directory once every row has been written by a shard."""
    import numpy as np

    files = staging(paths)
    views = files.views()
    arrays = [np.load(files.vectors(view), mmap_mode="r") for view in views]
    rows = len(arrays[0]) if arrays else 0
    covered = sorted(tuple(result["shard"]) for result in shards)
    expected = [
        (start, min(start + config.export.shard_items, rows)) for start in range(0, rows, config.export.shard_items)
    ]
    if covered != expected:
        raise RuntimeError(
            f"{files.root}: export shards {covered} do not cover the catalog's {rows} rows as {expected}; run `smar "
            f"export` again."
        )
    summary = {
        "items": rows,
        "views": views,
        "dim": int(arrays[0].shape[1]),
        "shards": len(shards),
        "seconds": round(sum(result["seconds"] for result in shards), 3),
    }
    files.summary.write_text(json.dumps(summary, indent=2) + "\n")
    publish(files.root, paths.embeddings.root)
    return summary | {"embeddings_dir": str(paths.embeddings.root)}


def read_embeddings(directory: Path, mmap: bool = False):
    """({view: embeddings float32 [N, D]}, item ids list[str]) from an export directory;
    memory-mapped with `mmap` (for catalogs larger than memory)."""
    import numpy as np
    import pandas as pd

    files, mode = EmbeddingFiles(Path(directory)), "r" if mmap else None
    embeddings = {view: np.load(files.vectors(view), mmap_mode=mode) for view in files.views()}
    return embeddings, pd.read_parquet(files.item_ids)["item_id"].tolist()
