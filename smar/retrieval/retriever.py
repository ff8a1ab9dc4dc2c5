"""The retriever as it is served: query encoder + routing head + FAISS indexes + id map.

Evaluation, the promotion gate and serving all search through this one class; the MLflow
pyfunc model is a thin wrapper around it. A SMAR model with adaptive routing carries two
indexes (multimodal and text item embeddings); its routing head picks one per query.

Queries are encoded by the checkpoint's ONNX query tower when it has one, so a retriever loads
the tokenizer, that tower and the indexes, and builds the PyTorch model only when something
needs it (no ONNX tower, the routing head, a caller asking for `model`): building it is most
of a load's CPU time, which a serving host spends beside the requests it is answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path


@dataclass(frozen=True)
class Hits:
    item_ids: list[list[str]]  # per query, best first
    scores: list[list[float]]
    views: list[str]  # which index served each query


class Retriever:
    def __init__(self, model_dir: str | Path, index_dir: str | Path):
        from smar.model.checkpoint import load_tokenizer, saved_config
        from smar.model.kinds import served_views
        from smar.model.onnx_query import load_query_onnx
        from smar.retrieval.index import load_index
        from smar.retrieval.thumbnails import Thumbnails

        self.model_dir = Path(model_dir)
        self.config = saved_config(model_dir)
        self.tokenizer = load_tokenizer(model_dir)
        self.onnx = load_query_onnx(model_dir)  # None: PyTorch encodes the queries
        self.indexes, self.item_ids, self.items = load_index(index_dir)  # items: {item_id: (title, URL, row)}
        self.thumbnails = Thumbnails.open(index_dir)  # None: the index carries none
        expected = set(served_views(self.config))
        if set(self.indexes) != expected:
            raise ValueError(
                f"{index_dir}: has indexes for {sorted(self.indexes)} but the model serves {sorted(expected)}; "
                f"rebuild the index."
            )

    def image_url(self, item_id: str) -> str | None:
        """Where the search page finds the item's picture: the catalog's image_url, else its thumbnail."""
        _, url, row = self.items.get(item_id, (None, None, None))
        if url is None and row is not None and self.thumbnails is not None and self.thumbnails.has(row):
            return f"/images/{item_id}"
        return url

    def thumbnail(self, item_id: str) -> bytes | None:
        """The item's JPEG thumbnail, or None when the index carries none for it."""
        _, _, row = self.items.get(item_id, (None, None, None))
        return self.thumbnails.read(row) if row is not None and self.thumbnails is not None else None

    @cached_property
    def model(self):
        """The PyTorch model (towers and routing head), loaded on first use."""
        from smar.model.checkpoint import load_model

        return load_model(self.model_dir)[0]

    def encode(self, queries: list[str]):
        """(query vectors float32 [Q, D], the index that serves each query)."""
        import torch

        from smar.model.inference import encode_texts

        if self.onnx is not None:
            vectors = torch.from_numpy(self.onnx.encode(self.tokenizer, list(queries)))
        else:
            vectors = encode_texts(self.model, self.tokenizer, list(queries))
        if len(self.indexes) == 1:
            views = [next(iter(self.indexes))] * len(queries)
        else:
            views = ["multimodal" if m else "text" for m in self.model.route_to_multimodal(vectors).tolist()]
        return vectors.numpy(), views

    def search(self, queries: list[str], k: int = 10) -> Hits:
        """Top-k item ids and scores for each query text, best first."""
        if not queries:
            return Hits([], [], [])
        return self.search_encoded(*self.encode(queries), k)

    def search_encoded(self, vectors, views: list[str], k: int = 10) -> Hits:
        """`search` for queries already encoded (`encode`'s vectors and views)."""
        import numpy as np

        item_ids: list[list[str]] = [[] for _ in views]
        scores: list[list[float]] = [[] for _ in views]
        for view, index in self.indexes.items():
            rows = np.array([row for row, chosen in enumerate(views) if chosen == view], dtype=np.int64)
            if not len(rows):
                continue
            found_scores, found_ids = index.search(vectors[rows], min(k, index.ntotal))
            for row, id_row, score_row in zip(rows, found_ids, found_scores):
                item_ids[row] = [self.item_ids[i] for i in id_row if i >= 0]
                scores[row] = [float(s) for s, i in zip(score_row, id_row) if i >= 0]
        return Hits(item_ids, scores, views)

    def exact_top_ids(self, queries: list[str], embeddings: dict, k: int = 10) -> list[list[str]]:
        """The exact top-k item ids for each query, by brute force over the exported `embeddings`
        (what the approximate index is measured against)."""
        import numpy as np

        from smar.retrieval.index import exact_search, normalized

        vectors, views = self.encode(queries)
        ids = np.fromiter(self.item_ids, dtype=np.int64, count=len(self.item_ids))  # faiss ids in export row order
        found: list[list[str]] = [[] for _ in queries]
        for view in set(views):
            rows = [row for row, chosen in enumerate(views) if chosen == view]
            for row, top in zip(rows, exact_search(embeddings[view], ids, normalized(vectors[rows]), k)):
                found[row] = [self.item_ids[i] for i in top if i >= 0]
        return found
