"""The retriever as it is served: query encoder + FAISS index + id map.

Evaluation, the promotion gate and serving all search through this one class; the MLflow
pyfunc model is a thin wrapper around it.
"""

from __future__ import annotations

from pathlib import Path


class Retriever:
    def __init__(self, model_dir: str | Path, index_dir: str | Path):
        from smar.index import load_index
        from smar.model import load_model

        self.model, self.tokenizer = load_model(model_dir)
        self.index, self.item_ids = load_index(index_dir)

    def search(self, queries: list[str], k: int = 10) -> tuple[list[list[str]], list[list[float]]]:
        """Top-k (item ids, scores) for each query text, best first."""
        from smar.model import encode_texts

        if not queries:
            return [], []
        vectors = encode_texts(self.model, self.tokenizer, list(queries)).numpy()
        scores, ids = self.index.search(vectors, min(k, self.index.ntotal))
        found = [[self.item_ids[i] for i in row if i >= 0] for row in ids]
        return found, [[float(s) for s, i in zip(row, id_row) if i >= 0] for row, id_row in zip(scores, ids)]
