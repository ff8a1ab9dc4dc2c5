"""Step 3, export: checkpoint + catalog -> item embeddings (`item_embeddings.npy` + `item_ids.parquet`)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from smar.config import SmarConfig
from smar.paths import Paths, replace_on_success, require

log = logging.getLogger(__name__)

EMBEDDINGS_FILE, IDS_FILE = "item_embeddings.npy", "item_ids.parquet"


def export(config: SmarConfig, paths: Paths) -> dict:
    import numpy as np
    import pandas as pd

    from smar.dataset import load_dataset
    from smar.model import encode_item_batch, images_to_tensor, item_text, load_model

    started = time.perf_counter()
    model, tokenizer = load_model(require(paths.model_dir, "train"))
    items = load_dataset(paths.data).items.reset_index(drop=True)
    batch_size = config.export.batch_size
    embeddings = np.empty((len(items), model.config.embedding_dim), dtype=np.float32)
    for start in range(0, len(items), batch_size):
        batch = items.iloc[start : start + batch_size]
        texts = [item_text(*row) for row in zip(batch["title"], batch["category"], batch["brand"])]
        images = images_to_tensor([paths.data / p for p in batch["image"]], model.config.image_size)
        embeddings[start : start + len(batch)] = encode_item_batch(model, tokenizer, texts, images).numpy()
        log.info("exported %d/%d items", start + len(batch), len(items))
    summary = {"items": len(items), "dim": int(embeddings.shape[1]), "seconds": round(time.perf_counter() - started, 3)}
    with replace_on_success(paths.embeddings_dir) as scratch:
        np.save(scratch / EMBEDDINGS_FILE, embeddings)
        pd.DataFrame({"item_id": items["item_id"].astype(str)}).to_parquet(scratch / IDS_FILE, index=False)
        (scratch / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary | {"embeddings_dir": str(paths.embeddings_dir)}


def read_embeddings(directory: Path):
    """(embeddings float32 [N, D], item ids list[str]) from an export directory."""
    import numpy as np
    import pandas as pd

    directory = Path(directory)
    return np.load(directory / EMBEDDINGS_FILE), pd.read_parquet(directory / IDS_FILE)["item_id"].tolist()
