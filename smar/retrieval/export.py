"""Step 4, export: checkpoint + catalog -> item embeddings, one file per served view.

`outputs/embeddings` (`smar.core.paths.EmbeddingFiles`) holds `item_embeddings.<view>.npy`
(float16 [N, D], rows in items.parquet order: half of float32's bytes, and the same top 10 from
vectors of unit length), `item_ids.parquet`, `tuning_queries.npy` (float16 vectors of up to
1000 train and valid queries, which the index step tunes its search against) and
`export.json`. Readers take float32 of them a chunk at a time (`smar.retrieval.index.normalized`).

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
EMBEDDING_DTYPE = "float16"


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
    from smar.features import inputs
    from smar.model.checkpoint import load_model
    from smar.model.inference import encode_texts
    from smar.model.kinds import served_views

    model, tokenizer = load_model(require(paths.model.root, "train"))
    dataset = load_dataset(paths.data)
    items = dataset.items
    # An image tower that trains its backbone reads decoded pixels: decoded once, before the shards read them.
    inputs.item_images(model, paths, inputs.features_for(model, paths))
    files = staging(paths)
    shutil.rmtree(files.root, ignore_errors=True)  # a failed export's leftovers
    files.root.mkdir(parents=True)
    for view in served_views(model.config):
        shape = (len(items), model.config.embedding_dim)
        np.lib.format.open_memmap(files.vectors(view), mode="w+", dtype=EMBEDDING_DTYPE, shape=shape).flush()
    pd.DataFrame({"item_id": items["item_id"].astype(str)}).to_parquet(files.item_ids, index=False)
    queries = pd.concat([dataset.split_queries("train"), dataset.split_queries("valid")]).drop_duplicates("query_id")
    sample = queries.sample(min(MAX_TUNING_QUERIES, len(queries)), random_state=0)["text"].tolist()
    np.save(files.tuning_queries, encode_texts(model, tokenizer, sample).numpy().astype(EMBEDDING_DTYPE))
    size = config.export.shard_items
    return [(start, min(start + size, len(items))) for start in range(0, len(items), size)]


def export_shard(config: SmarConfig, paths: Paths, shard: tuple[int, int]) -> dict:
    """Encode catalog rows [start, end) into the staging files, a batch at a time."""
    import numpy as np

    from smar.data.image_cache import rows_to_tensor
    from smar.features import inputs
    from smar.model.checkpoint import load_model
    from smar.model.inference import encode_item_batch, resolve_device
    from smar.model.kinds import served_views

    started = time.perf_counter()
    start, end = shard
    files = staging(paths)
    if not files.root.is_dir():
        raise MissingInputError(f"{files.root}: missing. An export shard runs after start_export; run `smar export`.")
    model, tokenizer = load_model(paths.model.root, device=resolve_device(config.export.device))
    views = served_views(model.config)
    features = inputs.features_for(model, paths)
    text = _ShardText(model, tokenizer, paths, features, start, end)
    images = inputs.item_images(model, paths, features)
    outputs = {view: np.load(files.vectors(view), mmap_mode="r+") for view in views}
    order = np.argsort(-text.lengths, kind="stable")  # batches of similar length: little padding
    with Progress(f"export items {start}-{end}", end - start, "item") as progress:
        for first in range(0, len(order), config.export.batch_size):
            rows = np.sort(order[first : first + config.export.batch_size])
            batch_text = text.rows(rows)
            pixels = rows_to_tensor(images, start + rows) if images is not None else None
            for view, vectors in encode_item_batch(model, batch_text, pixels, views).items():
                outputs[view][start + rows] = vectors.numpy().astype(EMBEDDING_DTYPE)
            progress.advance(len(rows))
    for array in outputs.values():
        array.flush()
    seconds = time.perf_counter() - started
    log.info("exported items %d-%d (%.0f items/s)", start, end, (end - start) / seconds if seconds else 0)
    return {"shard": [start, end], "items": end - start, "seconds": round(seconds, 3)}


class _ShardText:
    """The item text tower's inputs for catalog rows [start, end), by row within the shard:
    token ids padded to the batch's longest, or the frozen encoder's states."""

    def __init__(self, model, tokenizer, paths: Paths, features, start: int, end: int):
        import numpy as np
        import pyarrow.parquet as pq

        from smar.core.contract import ITEM_TEXT_COLUMNS, item_texts
        from smar.features import inputs

        self.start, self.frozen = start, model.item_text_encoder.frozen
        if self.frozen:
            self.text, self.lengths = features.item_text, features.item_text.lengths()[start:end]
        else:
            table = pq.read_table(paths.data / ITEMS, columns=list(ITEM_TEXT_COLUMNS)).slice(start, end - start)
            self.text = inputs.item_text(model, tokenizer, item_texts(table.to_pydict()), features)
            self.lengths = np.asarray(self.text["attention_mask"]).sum(1)

    def rows(self, rows) -> dict:
        if self.frozen:
            return self.text.rows(self.start + rows)
        width = int(self.lengths[rows].max())
        return {k: v[rows][:, :width] for k, v in self.text.items()}


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
    """({view: embeddings float16 [N, D]}, item ids list[str]) from an export directory;
    memory-mapped with `mmap` (for catalogs larger than memory)."""
    import numpy as np
    import pandas as pd

    files, mode = EmbeddingFiles(Path(directory)), "r" if mmap else None
    embeddings = {view: np.load(files.vectors(view), mmap_mode=mode) for view in files.views()}
    return embeddings, pd.read_parquet(files.item_ids)["item_id"].tolist()
