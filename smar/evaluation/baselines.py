"""What the model is compared with: off-the-shelf MiniLM title search (zero-shot) and a random ranking."""

from __future__ import annotations

from smar.core.config import SmarConfig
from smar.core.errors import MissingInputError
from smar.core.paths import Paths


def random_rankings(item_ids: list[str], query_ids, k: int, seed: int) -> dict[str, list[str]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    k = min(k, len(item_ids))
    return {q: [item_ids[i] for i in rng.choice(len(item_ids), size=k, replace=False)] for q in query_ids}


def zero_shot_rankings(config: SmarConfig, paths: Paths, items, queries, k: int) -> dict[str, list[str]]:
    """query_id -> ranked item ids of off-the-shelf MiniLM title search, with no training: item
    texts and queries through all-MiniLM-L6-v2, mean-pooled, by cosine. The search a shop would
    run instead of smar. The item texts' states are the featurize step's (MiniLM's, frozen)."""
    import numpy as np
    import torch

    from smar.features.step import ITEM_TEXT, load_features
    from smar.model.tokenizer import tokenize
    from smar.model.towers import masked_mean, zero_shot_encoder
    from smar.retrieval.index import exact_search, normalized

    length = config.model.max_text_length
    encoder, tokenizer = zero_shot_encoder(length)
    item_text = load_features(paths, config.model, (ITEM_TEXT,)).item_text
    if item_text is None or len(item_text) != len(items):
        raise MissingInputError(
            f"{paths.features.manifest}: no item text features for the zero-shot baseline; run `smar featurize` "
            f"with evaluate.zero_shot_baseline: true."
        )
    chunks = []
    for start in range(0, len(items), 4096):
        batch = item_text.rows(np.arange(start, min(start + 4096, len(items))))
        chunks.append(masked_mean(batch["states"], batch["attention_mask"]).numpy())
    item_vectors = np.concatenate(chunks)
    query_texts, query_vectors = queries["text"].tolist(), []
    with torch.inference_mode():
        for start in range(0, len(query_texts), 512):
            tokens = tokenize(tokenizer, query_texts[start : start + 512])
            query_vectors.append(masked_mean(encoder.states(**tokens), tokens["attention_mask"]).numpy())
    item_ids = items["item_id"].astype(str).tolist()
    top = exact_search(
        item_vectors,
        np.arange(len(item_ids), dtype=np.int64),
        normalized(np.concatenate(query_vectors)),
        min(k, len(item_ids)),
    )
    return {q: [item_ids[i] for i in row if i >= 0] for q, row in zip(queries["query_id"], top)}
