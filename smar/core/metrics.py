"""Retrieval metrics over ranked lists, checked against hand-computed values in the tests.

A metric is a name and a cutoff, `Metric("recall", 10)`. It has one key, `recall_at_10`,
wherever it is stored (metrics.json, MLflow metrics and tags, registration.json, params.yaml),
prefixed by what it measures where it is tracked (`test.cold.zero_shot.recall_at_10`), and
one label people read, `Recall@10`.

- Recall@K    = |relevant in top K| / |relevant|, averaged over queries
- Precision@K = |relevant in top K| / K, averaged over queries
- F1@K        = harmonic mean of the averaged Precision@K and Recall@K (as the SMAR paper reports)
- MRR@K       = 1 / rank of the first relevant item within the top K, else 0
- NDCG@K      = DCG with gain = label and discount log2(rank + 1), over the ideal DCG at K (graded:
                labels are grades or click counts)
- binary NDCG@K = the same with every relevant item's gain 1

Training (its validation metric, the routing head's targets), evaluation and the promotion
gate all score rankings here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

LABELS = {
    "recall": "Recall@{k}",
    "precision": "Precision@{k}",
    "f1": "F1@{k}",
    "mrr": "MRR@{k}",
    "ndcg": "NDCG@{k}",
    "bndcg": "binary NDCG@{k}",
}


@dataclass(frozen=True)
class Metric:
    name: str  # one of LABELS
    k: int

    def __post_init__(self):
        if self.name not in LABELS or self.k < 1:
            raise ValueError(f"no metric {self.name}@{self.k}: the names are {', '.join(LABELS)} and k is at least 1")

    @classmethod
    def parse(cls, key: str) -> Metric:
        """`recall_at_10` -> Metric("recall", 10)."""
        match = re.fullmatch(r"([a-z0-9]+)_at_(\d+)", key)
        if not match or match[1] not in LABELS:
            raise ValueError(
                f"{key!r} is not a metric: write NAME_at_K with NAME one of {', '.join(LABELS)} (recall_at_10)"
            )
        return cls(match[1], int(match[2]))

    @property
    def key(self) -> str:
        return f"{self.name}_at_{self.k}"

    @property
    def label(self) -> str:
        return LABELS[self.name].format(k=self.k)

    def tracked(self, *scope: str) -> str:
        """The key under what it measures: `tracked("test", "cold")` is `test.cold.recall_at_10`."""
        return ".".join((*scope, self.key))


def reported(ks) -> list[Metric]:
    """Every metric an evaluation at cutoffs `ks` reports, in report order."""
    return [Metric(name, k) for k in ks for name in LABELS]


def per_query_metrics(ranking: list[str], relevant: dict[str, int], ks=(10, 50)) -> dict[str, float]:
    """One query's Recall, Precision, MRR, NDCG and binary NDCG at each k, by key."""
    if not relevant:
        raise ValueError("a query needs at least one relevant item to be evaluated")
    ideal_gains = sorted(relevant.values(), reverse=True)
    scores = {}
    for k in ks:
        top = ranking[:k]
        hit_ranks = [rank for rank, item in enumerate(top, start=1) if item in relevant]
        dcg = sum(relevant[item] / math.log2(rank + 1) for rank, item in enumerate(top, start=1) if item in relevant)
        ideal = sum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal_gains[:k], start=1))
        binary_ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(k, len(relevant)) + 1))
        scores[Metric("recall", k).key] = len(hit_ranks) / len(relevant)
        scores[Metric("precision", k).key] = len(hit_ranks) / k
        scores[Metric("mrr", k).key] = 1.0 / hit_ranks[0] if hit_ranks else 0.0
        scores[Metric("ndcg", k).key] = dcg / ideal if ideal else 0.0
        scores[Metric("bndcg", k).key] = sum(1 / math.log2(rank + 1) for rank in hit_ranks) / binary_ideal
    return scores


def retrieval_metrics(
    rankings: dict[str, list[str]], relevant: dict[str, dict[str, int]], ks=(10, 50)
) -> dict[str, float]:
    """Every reported metric at each k, averaged over the queries that have relevant items."""
    queries = [q for q in relevant if relevant[q]]
    if not queries:
        raise ValueError("no query with relevant items to evaluate")
    rows = [per_query_metrics(rankings.get(q, []), relevant[q], ks) for q in queries]
    mean = {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}
    report = {}
    for metric in reported(ks):
        if metric.name == "f1":
            p, r = mean[Metric("precision", metric.k).key], mean[Metric("recall", metric.k).key]
            report[metric.key] = 2 * p * r / (p + r) if p + r else 0.0
        else:
            report[metric.key] = mean[metric.key]
    return report


def mean_score(rankings: dict[str, list[str]], relevant: dict[str, dict[str, int]], metric: Metric) -> float:
    """One metric averaged over the queries with relevant items: what training and the gate report."""
    return retrieval_metrics(rankings, relevant, ks=(metric.k,))[metric.key]


def per_query_scores(
    rankings: dict[str, list[str]], relevant: dict[str, dict[str, int]], metric: Metric
) -> list[float]:
    """`metric` of each query with relevant items, in `relevant`'s order: what a paired comparison
    of two rankers resamples. F1 here is each query's own (of its precision and recall), so its
    mean is not the reported F1 (of the mean precision and recall)."""
    scores = []
    for query, items in relevant.items():
        if not items:
            continue
        row = per_query_metrics(rankings.get(query, []), items, (metric.k,))
        if metric.name == "f1":
            p, r = row[Metric("precision", metric.k).key], row[Metric("recall", metric.k).key]
            scores.append(2 * p * r / (p + r) if p + r else 0.0)
        else:
            scores.append(row[metric.key])
    return scores


def recall_against_exact(found, exact, k: int = 10) -> float:
    """Recall@k of an approximate search against exact search: the share of each query's exact
    top k (ids; -1 pads a short list) that the approximate search found in its top k, averaged."""
    shares = []
    for approximate, best in zip(found, exact):
        best = {item for item in list(best)[:k] if item != -1}
        shares.append(len(set(list(approximate)[:k]) & best) / len(best) if best else 0.0)
    return sum(shares) / len(shares) if shares else 0.0
