"""Step 3, export: checkpoint + catalog -> item embeddings, one file per served view
(`item_embeddings.<view>.npy`) + `item_ids.parquet`."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from smar.config import SmarConfig
from smar.paths import Paths, replace_on_success, require

log = logging.getLogger(__name__)

IDS_FILE = "item_ids.parquet"


def embeddings_file(view: str) -> str:
    return f"item_embeddings.{view}.npy"


def export(config: SmarConfig, paths: Paths) -> dict:
    import numpy as np
    import pandas as pd

    from smar.dataset import load_dataset
    from smar.model import encode_item_batch, item_images, item_text, load_model, served_views

    started = time.perf_counter()
    model, tokenizer = load_model(require(paths.model_dir, "train"))
    items = load_dataset(paths.data).items.reset_index(drop=True)
    batch_size = config.export.batch_size
    views = served_views(model.config)
    embeddings = {view: np.empty((len(items), model.config.embedding_dim), dtype=np.float32) for view in views}
    for start in range(0, len(items), batch_size):
        batch = items.iloc[start : start + batch_size]
        texts = [item_text(*row) for row in zip(batch["title"], batch["category"], batch["brand"])]
        images = item_images(paths.data, batch["image"], model.config.image_size, rows=slice(start, start + len(batch)))
        for view, vectors in encode_item_batch(model, tokenizer, texts, images, views).items():
            embeddings[view][start : start + len(batch)] = vectors.numpy()
        log.info("exported %d/%d items", start + len(batch), len(items))
    summary = {"items": len(items), "views": list(views), "dim": model.config.embedding_dim, "seconds": round(time.perf_counter() - started, 3)}
    with replace_on_success(paths.embeddings_dir) as scratch:
        for view, array in embeddings.items():
            np.save(scratch / embeddings_file(view), array)
        pd.DataFrame({"item_id": items["item_id"].astype(str)}).to_parquet(scratch / IDS_FILE, index=False)
        (scratch / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary | {"embeddings_dir": str(paths.embeddings_dir)}


def read_embeddings(directory: Path):
    """({view: embeddings float32 [N, D]}, item ids list[str]) from an export directory."""
    import numpy as np
    import pandas as pd

    directory = Path(directory)
    views = sorted(p.name.split(".")[1] for p in directory.glob(embeddings_file("*")))
    return {view: np.load(directory / embeddings_file(view)) for view in views}, pd.read_parquet(directory / IDS_FILE)["item_id"].tolist()
