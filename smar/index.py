"""Step 4, index: item embeddings -> one FAISS index per served view (`items.<view>.faiss`),
inner product on L2-normalised vectors.

The index stores 64-bit ids (a stable hash of each item id) through `IndexIDMap2`, and
`id_map.parquet` maps them back to the catalog's string ids, with each item's title and
image path for the search service. A hash rather than a row number keeps an item's id the
same when the catalog is reordered or grows.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from smar.config import SmarConfig
from smar.paths import Paths, replace_on_success, require

ID_MAP_FILE = "id_map.parquet"


def index_file(view: str) -> str:
    return f"items.{view}.faiss"


def faiss_id(item_id: str) -> int:
    """Stable non-negative 63-bit id for a catalog item id."""
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "big") & (2**63 - 1)


def build_index(config: SmarConfig, paths: Paths) -> dict:
    import faiss
    import numpy as np
    import pandas as pd

    from smar.export import read_embeddings

    started = time.perf_counter()
    embeddings, item_ids = read_embeddings(require(paths.embeddings_dir, "export"))
    ids = np.array([faiss_id(i) for i in item_ids], dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{paths.embeddings_dir}: two item ids hash to the same 64-bit id (or an item id repeats).")
    indexes = {}
    for view, array in embeddings.items():
        vectors = np.ascontiguousarray(array, dtype=np.float32)
        faiss.normalize_L2(vectors)
        indexes[view] = faiss.index_factory(vectors.shape[1], f"IDMap2,{config.index.factory}", faiss.METRIC_INNER_PRODUCT)
        if not indexes[view].is_trained:
            indexes[view].train(vectors)
        indexes[view].add_with_ids(vectors, ids)
    stats = {
        "factory": config.index.factory,
        "views": list(indexes),
        "items": len(ids),
        "dim": int(next(iter(embeddings.values())).shape[1]),
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    with replace_on_success(paths.index_dir) as scratch:
        for view, index in indexes.items():
            faiss.write_index(index, str(scratch / index_file(view)))
        items = pd.read_parquet(require(paths.data / "items.parquet", "data synth"), columns=["item_id", "title", "image"])
        shown = items.set_index("item_id").reindex(item_ids)
        id_map = pd.DataFrame({"faiss_id": ids, "item_id": item_ids, "title": shown["title"].to_numpy(), "image": shown["image"].to_numpy()})
        id_map.to_parquet(scratch / ID_MAP_FILE, index=False)
        stats["index_bytes"] = sum((scratch / index_file(view)).stat().st_size for view in indexes)
        (scratch / "build.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats | {"index_dir": str(paths.index_dir)}


def load_index(directory: Path):
    """({view: faiss index}, {faiss_id: item_id}, {item_id: (title, image path or None)})."""
    import faiss
    import pandas as pd

    directory = Path(directory)
    id_map = pd.read_parquet(directory / ID_MAP_FILE)
    views = sorted(p.name.split(".")[1] for p in directory.glob(index_file("*")))
    indexes = {view: faiss.read_index(str(directory / index_file(view))) for view in views}
    ids = id_map["item_id"].tolist()
    titles, images = (id_map[column] if column in id_map else [None] * len(ids) for column in ("title", "image"))  # older indexes lack them
    shown = {item: (title, image if isinstance(image, str) else None) for item, title, image in zip(ids, titles, images)}
    return indexes, dict(zip(id_map["faiss_id"].tolist(), ids)), shown
