"""Step 4, index: item embeddings -> FAISS index (inner product on L2-normalised vectors).

The index stores 64-bit ids (a stable hash of each item id) through `IndexIDMap2`, and
`id_map.parquet` maps them back to the catalog's string ids. A hash rather than a row
number keeps an item's id the same when the catalog is reordered or grows.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from smar.config import SmarConfig
from smar.paths import Paths, replace_on_success, require

INDEX_FILE, ID_MAP_FILE = "items.faiss", "id_map.parquet"


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
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    faiss.normalize_L2(vectors)
    index = faiss.index_factory(vectors.shape[1], f"IDMap2,{config.index.factory}", faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    index.add_with_ids(vectors, ids)
    stats = {
        "factory": config.index.factory,
        "items": int(index.ntotal),
        "dim": int(vectors.shape[1]),
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    with replace_on_success(paths.index_dir) as scratch:
        faiss.write_index(index, str(scratch / INDEX_FILE))
        pd.DataFrame({"faiss_id": ids, "item_id": item_ids}).to_parquet(scratch / ID_MAP_FILE, index=False)
        stats["index_bytes"] = (scratch / INDEX_FILE).stat().st_size
        (scratch / "build.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats | {"index_dir": str(paths.index_dir)}


def load_index(directory: Path):
    """(faiss index, {faiss_id: item_id})."""
    import faiss
    import pandas as pd

    directory = Path(directory)
    id_map = pd.read_parquet(directory / ID_MAP_FILE)
    return faiss.read_index(str(directory / INDEX_FILE)), dict(zip(id_map["faiss_id"].tolist(), id_map["item_id"].tolist()))
