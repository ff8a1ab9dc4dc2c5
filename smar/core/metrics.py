"""Retrieval metrics over ranked lists, checked against hand-computed values in the tests.

- Recall@K    = |relevant in top K| / |relevant|, averaged over queries
- Precision@K = |relevant in top K| / K, averaged over queries
- F1@K        = harmonic mean of the averaged Precision@K and Recall@K (as the SMAR paper reports)
- MRR@10      = 1 / rank of the first relevant item within the top 10, else 0
- NDCG@10     = DCG with gain = label and discount log2(rank + 1), over the ideal DCG

Training (validation Recall@10, the routing head's targets), evaluation and the promotion gate
all score rankings here.
"""

from __future__ import annotations

import math


def per_query_metrics(ranking: list[str], relevant: dict[str, int], ks=(10, 50)) -> dict[str, float]:
    if not relevant:
        raise ValueError("a query needs at least one relevant item to be evaluated")
    scores = {}
    for k in ks:
        hits = sum(1 for item in ranking[:k] if item in relevant)
        scores[f"recall@{k}"] = hits / len(relevant)
        scores[f"precision@{k}"] = hits / k
    first_hit = next((rank for rank, item in enumerate(ranking[:10], start=1) if item in relevant), None)
    scores["mrr@10"] = 1.0 / first_hit if first_hit else 0.0
    dcg = sum(relevant.get(item, 0) / math.log2(rank + 1) for rank, item in enumerate(ranking[:10], start=1))
    ideal = sum(
        label / math.log2(rank + 1) for rank, label in enumerate(sorted(relevant.values(), reverse=True)[:10], start=1)
    )
    scores["ndcg@10"] = dcg / ideal if ideal else 0.0
    return scores


def retrieval_metrics(
    rankings: dict[str, list[str]], relevant: dict[str, dict[str, int]], ks=(10, 50)
) -> dict[str, float]:
    """Average the per-query metrics over every query that has relevant items."""
    queries = [q for q in relevant if relevant[q]]
    if not queries:
        raise ValueError("no query with relevant items to evaluate")
    rows = [per_query_metrics(rankings.get(q, []), relevant[q], ks) for q in queries]
    mean = {name: sum(row[name] for row in rows) / len(rows) for name in rows[0]}
    report = {}
    for k in ks:
        p, r = mean[f"precision@{k}"], mean[f"recall@{k}"]
        report |= {f"recall@{k}": r, f"precision@{k}": p, f"f1@{k}": 2 * p * r / (p + r) if p + r else 0.0}
    return report | {"mrr@10": mean["mrr@10"], "ndcg@10": mean["ndcg@10"]}


def recall_at_10(rankings: dict[str, list[str]], relevant: dict[str, dict[str, int]]) -> float:
    """Recall@10 averaged over the queries with relevant items: what training, evaluation and the gate report."""
    return retrieval_metrics(rankings, relevant, ks=(10,))["recall@10"]


def recall_against_exact(found, exact, k: int = 10) -> float:
    """Recall@k of an approximate search against exact search: the share of each query's exact
    top k (ids; -1 pads a short list) that the approximate search found in its top k, averaged."""
    shares = []
    for approximate, best in zip(found, exact):
        best = {item for item in list(best)[:k] if item != -1}
        shares.append(len(set(list(approximate)[:k]) & best) / len(best) if best else 0.0)
    return sum(shares) / len(shares) if shares else 0.0
