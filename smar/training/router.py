"""Stage 2, the adaptive-routing head, and the model's score as served (through the head when it has one)."""

from __future__ import annotations

from smar.core.metrics import Metric
from smar.training.batches import Catalog

ROUTING_TARGET = Metric("ndcg", 10)  # per training query, the view that ranks its relevant items better by this


def routed_score(model, tokenizer, catalog: Catalog, queries, relevant, metric: Metric) -> float:
    """`metric` of the model as served (through the routing head when it has one)."""
    from smar.core import metrics
    from smar.model.inference import encode_texts
    from smar.model.kinds import served_views

    if queries.empty:
        return float("nan")
    model.eval()
    item_vectors = catalog.vectors(model, served_views(model.config))
    query_vectors = encode_texts(model, tokenizer, queries["text"].tolist())
    top = served_top_rows(model, query_vectors, item_vectors, metric.k)
    rankings = {q: [catalog.item_ids[i] for i in row] for q, row in zip(queries["query_id"], top)}
    return metrics.mean_score(rankings, relevant, metric)


def served_top_rows(model, query_vectors, item_vectors: dict, k: int):
    """Catalog rows of each query's top k items, ranked in the view the model serves it with: with a
    routing head, the queries it sends to each view are searched in that view's vectors alone."""
    import numpy as np
    import torch

    from smar.core.topk import top_k
    from smar.model.kinds import served_views

    views = served_views(model.config)
    if len(views) == 1:
        return top_k(query_vectors, item_vectors[views[0]], k)[1]
    with torch.inference_mode():
        to_multimodal = model.route_to_multimodal(query_vectors).cpu()
    rows = np.empty((len(query_vectors), min(k, len(item_vectors["multimodal"]))), dtype=np.int64)
    for view, chosen in (("multimodal", to_multimodal), ("text", ~to_multimodal)):
        if chosen.any():
            rows[chosen.numpy()] = top_k(query_vectors[chosen], item_vectors[view], k)[1]
    return rows


def train_router(model, tokenizer, catalog: Catalog, query_texts, relevant: list[dict], settings) -> dict[str, float]:
    """Stage 2: teach the head P which item view serves each query better.

    Target per training query: 1 when the multimodal index ranks its relevant items better
    (ROUTING_TARGET, nDCG@10) than the text index, 0 when the text index does; ties carry no signal and are
    left out. The towers stay frozen: only P learns, on the query vector.
    """
    import torch
    from torch.nn import functional as F

    from smar.core.metrics import per_query_metrics
    from smar.core.topk import top_k
    from smar.model.inference import encode_texts

    target = ROUTING_TARGET
    model.eval()
    item_vectors = catalog.vectors(model, ("multimodal", "text"))
    query_vectors = encode_texts(model, tokenizer, query_texts)
    gains = {}
    for view in ("multimodal", "text"):
        top = top_k(query_vectors, item_vectors[view], target.k)[1]
        rankings = [[catalog.item_ids[row] for row in rows] for rows in top.tolist()]
        gains[view] = torch.tensor(
            [
                per_query_metrics(ranking, dict.fromkeys(rel, 1), ks=(target.k,))[target.key]
                for ranking, rel in zip(rankings, relevant)
            ]
        )
    decisive = gains["multimodal"] != gains["text"]
    targets = (gains["multimodal"] > gains["text"]).float()[decisive]
    inputs = query_vectors[decisive]
    device = next(model.parameters()).device
    if len(inputs):
        model.router.requires_grad_(True)
        optimizer = torch.optim.Adam(model.router.parameters(), lr=1e-2)
        model.router.train()
        generator = torch.Generator().manual_seed(settings.seed)
        for _ in range(settings.router_epochs):
            for batch in torch.randperm(len(inputs), generator=generator).split(256):
                logits = model.router(inputs[batch].to(device)).squeeze(-1)
                loss = F.binary_cross_entropy_with_logits(logits, targets[batch].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        model.router.eval()
    with torch.inference_mode():
        routed = model.route_to_multimodal(query_vectors.to(device)).float().mean().item()
    return {
        "router_decisive_queries": float(len(inputs)),
        "router_multimodal_better": float(targets.sum().item()) if len(inputs) else 0.0,
        "router_train_fraction_multimodal": routed,
    }
