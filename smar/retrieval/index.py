"""Step 5, index: item embeddings -> one FAISS index per served view (`items.<view>.faiss`),
inner product on L2-normalised vectors (file names: `smar.core.paths.IndexFiles`).

The index type is a `faiss.index_factory` string (`index.factory`), or `auto`: exact search
(Flat) up to 100k items, HNSW up to 5M, IVF-PQ beyond (its candidates reranked on 8-bit
vectors: less than half the memory of float vectors). An approximate
index is tuned on build: the smallest efSearch (HNSW) or nprobe (IVF) whose Recall@10 against
exact search, over the export's tuning queries, reaches `index.target_recall`. The setting is
saved inside the index file, and `build.json` records it with the recall it reached.

The index stores 64-bit ids (a stable hash of each item id) through `IndexIDMap2`, and
`id_map.parquet` maps them back to the catalog's string ids, with what the search page shows of
each item: its title, its image path, and its `image_url` when the catalog has one. A hash
rather than a row number keeps an item's id the same when the catalog is reordered or grows.
Items with an image file and no URL also get a small JPEG thumbnail (`index.thumbnail_size`)
in `thumbnails.bin` (smar.retrieval.thumbnails), so the registered version carries what the
page shows and a serving host needs no dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path

from smar.core.config import SmarConfig
from smar.core.contract import IMAGE_URL, ITEMS
from smar.core.metrics import Metric
from smar.core.paths import IndexFiles, Paths, replace_on_success, require
from smar.core.tracking import Tracker

log = logging.getLogger(__name__)


def faiss_id(item_id: str) -> int:
    """Stable non-negative 63-bit id for a catalog item id."""
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "big") & (2**63 - 1)


FLAT_UP_TO, HNSW_UP_TO = 100_000, 5_000_000
SEARCH_PARAMETERS = {  # what an approximate index is tuned by, and the values tried, cheapest first
    "efSearch": (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024),
    "nprobe": (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024),
}
ADD_CHUNK = 65_536  # vectors normalised and added at a time
REFINE_K_FACTOR = 8  # a reranking index (Refine) rescores this many times k candidates
MAX_TUNING_ITEMS = 1000  # item vectors that stand in for queries when the export has none
EXACTNESS = Metric("recall", 10)  # how an approximate index is measured: its top 10 against exact search's


def choose_factory(setting: str, num_items: int, dim: int) -> str:
    """`index.factory`, or for `auto` the index that suits the catalog's size."""
    if setting != "auto":
        return setting
    if num_items <= FLAT_UP_TO:
        return "Flat"
    if num_items <= HNSW_UP_TO:
        return "HNSW32,Flat"
    lists = 2 ** round(math.log2(4 * math.sqrt(num_items)))
    # PQ finds candidates, 8-bit vectors rerank them
    return f"IVF{lists},PQ{dim // 2 if dim % 2 == 0 else dim}x8,Refine(SQ8)"


def build_index(config: SmarConfig, paths: Paths, tracker: Tracker | None = None) -> dict:
    import faiss
    import numpy as np

    from smar.retrieval.export import read_embeddings

    started = time.perf_counter()
    embeddings, item_ids = read_embeddings(require(paths.embeddings.root, "export"), mmap=True)
    ids = np.array([faiss_id(i) for i in item_ids], dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{paths.embeddings.root}: two item ids hash to the same 64-bit id (or an item id repeats).")
    dim = int(next(iter(embeddings.values())).shape[1])
    factory = choose_factory(config.index.factory, len(ids), dim)
    tuning_file = paths.embeddings.tuning_queries
    queries = np.load(tuning_file) if tuning_file.is_file() else None
    indexes, tuned = {}, {}
    for view, array in embeddings.items():
        indexes[view] = make_index(factory, array, ids)
        tuned[view] = tune(indexes[view], array, ids, queries, config.index.target_recall)
        log.info("index %s: %s over %d items, %s", view, factory, len(ids), tuned[view] or "exact")
    stats = {
        "factory": factory,
        "views": list(indexes),
        "items": len(ids),
        "dim": dim,
        "tuning": tuned,
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    with replace_on_success(paths.index.root) as scratch:
        files = IndexFiles(scratch)
        for view, index in indexes.items():
            faiss.write_index(index, str(files.faiss(view)))
        id_map = shown_items(paths.data, ids, item_ids)
        id_map.to_parquet(files.id_map, index=False)
        stats["index_bytes"] = sum(files.faiss(view).stat().st_size for view in indexes)
        stats["thumbnails"] = build_thumbnails(id_map, paths.data, config.index.thumbnail_size, files)
        files.build.write_text(json.dumps(stats, indent=2) + "\n")
    return stats | {"index_dir": str(paths.index.root)}


def shown_items(data_dir: Path, ids, item_ids):
    """The id map: faiss id, item id, and what the search page shows (title, image path, image URL)."""
    import pandas as pd
    import pyarrow.parquet as pq

    items_file = require(data_dir / ITEMS, "data synth")
    columns = ["item_id", "title", "image"] + ([IMAGE_URL] if IMAGE_URL in pq.read_schema(items_file).names else [])
    shown = pd.read_parquet(items_file, columns=columns).set_index("item_id").reindex(item_ids)
    return pd.DataFrame({"faiss_id": ids, "item_id": item_ids} | {c: shown[c].to_numpy() for c in columns[1:]})


def build_thumbnails(id_map, data_dir: Path, size: int, files: IndexFiles) -> dict | None:
    """Thumbnails of the items that have an image file and no image URL (None when there are none or size is 0)."""
    from smar.retrieval.thumbnails import write_thumbnails

    urls = id_map[IMAGE_URL] if IMAGE_URL in id_map else [None] * len(id_map)
    paths = id_map["image"]
    images = [path if isinstance(path, str) and not isinstance(url, str) else None for path, url in zip(paths, urls)]
    if size <= 0 or not any(images):
        return None
    made = write_thumbnails(data_dir, images, size, files.thumbnails)
    if not made["items"]:  # every image failed to read (and a warning said so)
        files.thumbnails.unlink()
        return None
    log.info(
        "index: %d thumbnails of at most %d px, %.0f bytes each, in %.1f s",
        made["items"],
        size,
        made["bytes_per_thumbnail"] or 0,
        made["seconds"],
    )
    return made


def make_index(factory: str, vectors, ids):
    """An `IDMap2,<factory>` inner-product index over the L2-normalised `vectors`, added in chunks
    (so memory-mapped embeddings are never all copied at once); trained on a sample when it needs training."""
    import faiss
    import numpy as np

    index = faiss.index_factory(vectors.shape[1], f"IDMap2,{factory}", faiss.METRIC_INNER_PRODUCT)
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexRefine):
        inner.k_factor = REFINE_K_FACTOR
    if not index.is_trained:
        sample = np.random.default_rng(0).choice(len(vectors), size=min(len(vectors), 256 * 1024), replace=False)
        index.train(normalized(vectors[np.sort(sample)]))
    for start in range(0, len(vectors), ADD_CHUNK):
        index.add_with_ids(normalized(vectors[start : start + ADD_CHUNK]), ids[start : start + ADD_CHUNK])
    return index


def normalized(vectors):
    import faiss
    import numpy as np

    vectors = np.array(vectors, dtype=np.float32, order="C")  # a copy: faiss normalises in place
    faiss.normalize_L2(vectors)
    return vectors


def search_parameter(index) -> str | None:
    """The parameter that trades an approximate index's speed for recall (None for exact search)."""
    import faiss

    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    if hasattr(inner, "hnsw"):
        return "efSearch"
    try:
        faiss.extract_index_ivf(index)
        return "nprobe"
    except RuntimeError:
        return None


def tune(index, vectors, ids, queries, target: float) -> dict:
    """Set the cheapest search parameter whose EXACTNESS (Recall@10 against exact search) reaches `target`.

    Returns {} for exact indexes, else the parameter, its value and the recall it reached
    (the most accurate value tried, with a warning, when none reaches the target).
    """
    import faiss

    name = search_parameter(index)
    if name is None:
        return {}
    if queries is None or not len(queries):  # an export without tuning queries: items stand in
        queries = vectors[:: max(1, len(vectors) // MAX_TUNING_ITEMS)][:MAX_TUNING_ITEMS]
    queries, k = normalized(queries), EXACTNESS.k
    exact = exact_search(vectors, ids, queries, k)
    space = faiss.ParameterSpace()
    for value in SEARCH_PARAMETERS[name]:
        space.set_index_parameter(index, name, value)
        recall = overlap(index.search(queries, k)[1], exact)
        if recall >= target:
            break
    else:
        log.warning(
            "index: %s=%d reaches %s %.3f of exact search, under the target %.3f",
            name,
            value,
            EXACTNESS.label,
            recall,
            target,
        )
    return {"parameter": name, "value": value, EXACTNESS.key: round(recall, 4), "queries": len(queries)}


def exact_search(vectors, ids, queries, k: int):
    """The ids of the exact top-k items for each (normalised) query, -1 past the catalog's end: brute force
    over `vectors`, normalised a chunk at a time, in bounded memory (smar.core.topk)."""
    import numpy as np

    from smar.core.topk import top_k

    rows = top_k(queries, vectors, k, prepare=normalized)[1]
    found = np.full((len(queries), k), -1, dtype=np.int64)
    found[:, : rows.shape[1]] = ids[rows]
    return found


def overlap(found, exact) -> float:
    """Recall@k of `found` against `exact` (ids per query): the share of the exact top k found."""
    k = exact.shape[1]
    return float(sum(len(set(f[:k]) & set(e) - {-1}) for f, e in zip(found, exact)) / (k * len(exact)))


def load_index(directory: Path):
    """({view: faiss index}, {faiss_id: item_id}, {item_id: (title, image URL or None, id-map row)});
    the row finds the item's thumbnail (smar.retrieval.thumbnails)."""
    import faiss
    import pandas as pd
    import pyarrow.parquet as pq

    files = IndexFiles(Path(directory))
    present = pq.read_schema(files.id_map).names
    id_map = pd.read_parquet(files.id_map, columns=[c for c in present if c != "image"])
    indexes = {view: faiss.read_index(str(files.faiss(view))) for view in files.views()}
    ids = id_map["item_id"].tolist()
    titles, urls = (
        id_map[column].tolist() if column in id_map else [None] * len(ids) for column in ("title", IMAGE_URL)
    )  # older indexes lack them
    shown = {
        item: (title, url if isinstance(url, str) else None, row)
        for row, (item, title, url) in enumerate(zip(ids, titles, urls))
    }
    return indexes, dict(zip(id_map["faiss_id"].tolist(), ids)), shown
