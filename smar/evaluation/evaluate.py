"""Step 6, evaluate: index + query encoder + held-out queries -> metrics, per-query results, plots.

The model is scored beside zero-shot MiniLM (off-the-shelf title search, no training) and a
random ranking (smar.evaluation.baselines), over every query of the split and over the cold
ones: queries about items no training query touched. The index is also measured against
exact search over the same embeddings. Metrics: smar.core.metrics; tables: smar.evaluation.report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from smar.core import metrics
from smar.core.config import SmarConfig
from smar.core.contract import QRELS
from smar.core.errors import DatasetError
from smar.core.metrics import Metric
from smar.core.paths import EvaluationFiles, Paths, replace_on_success, require
from smar.core.progress import Progress
from smar.core.tracking import Tracker, run_id_of
from smar.data.dataset import load_dataset
from smar.evaluation.baselines import random_rankings, zero_shot_rankings
from smar.evaluation.report import plot_recall_curve, tracked_metrics
from smar.retrieval.index import EXACTNESS

log = logging.getLogger(__name__)

Search = Callable[[list[str], int], list[list[str]]]


def rank(search: Search, queries, k: int) -> dict[str, list[str]]:
    """query_id -> ranked item ids, searching in batches."""
    rankings: dict[str, list[str]] = {}
    for start in range(0, len(queries), 512):
        batch = queries.iloc[start : start + 512]
        rankings.update(zip(batch["query_id"], search(batch["text"].tolist(), k)))
    return rankings


def mean_metrics(runs: list[dict], relevant: dict, ks) -> dict[str, float]:
    """The metrics of each ranking run (one for a model, several random draws), averaged."""
    scores = [metrics.retrieval_metrics(rankings, relevant, ks) for rankings in runs]
    return {name: sum(score[name] for score in scores) / len(scores) for name in scores[0]}


def evaluate(config: SmarConfig, paths: Paths, tracker: Tracker | None = None) -> dict:
    """Score the model beside zero-shot MiniLM and a random ranking, on every query of the split
    and on the cold ones; write metrics.json, the recall curve and per-query results."""
    from smar.retrieval.retriever import Retriever

    settings = config.evaluate
    dataset = load_dataset(paths.data)
    queries, relevant = dataset.split_queries(settings.split), dataset.relevant_items(settings.split)
    if queries.empty:
        raise DatasetError(f"{paths.data / QRELS}: the '{settings.split}' split has no queries to evaluate.")
    retriever = Retriever(require(paths.model.root, "train"), require(paths.index.root, "index"))
    hits = search_all(retriever, queries["text"].tolist(), max(*settings.ks, settings.plot_max_k))
    runs = {"model": [dict(zip(queries["query_id"], hits.item_ids))]} | baseline_runs(
        config, paths, dataset.items, queries
    )
    cold = dataset.cold_queries(settings.split)
    result = {
        "split": settings.split,
        "queries": len(queries),
        "items": len(dataset.items),
        "primary_metric": settings.primary_metric,
    } | scores(runs, relevant, cold, settings.ks)
    result["served_by_index"] = {view: hits.views.count(view) for view in sorted(set(hits.views))}
    result["index"] = {
        "factory": json.loads(paths.index.build.read_text())["factory"],
        EXACTNESS.key: round(index_recall(retriever, paths, queries, hits), 6),  # against exact search
    }
    write_evaluation(paths, result, runs, relevant, cold, queries, hits.views, settings)
    if tracker:
        run_id = run_id_of(paths.model.root)
        tracker.log_metrics(run_id, tracked_metrics(result))
        tracker.log_artifacts(run_id, paths.evaluation.root, "evaluation")
    return result


def search_all(retriever, texts: list[str], k: int, batch: int = 512):
    """The retriever's top-k for every query, searched a batch at a time with progress shown."""
    from smar.retrieval.retriever import Hits

    parts = []
    with Progress("evaluate: search", len(texts), "query") as progress:
        for start in range(0, len(texts), batch):
            parts.append(retriever.search(texts[start : start + batch], k))
            progress.advance(len(parts[-1].item_ids))
    return Hits(*([row for part in parts for row in getattr(part, name)] for name in ("item_ids", "scores", "views")))


def baseline_runs(config: SmarConfig, paths: Paths, items, queries) -> dict[str, list[dict]]:
    """The rankings the model is compared with: zero-shot MiniLM (when enabled) and random draws."""
    settings = config.evaluate
    depth = max(*settings.ks, settings.plot_max_k)
    catalog = items["item_id"].astype(str).tolist()
    runs = (
        {"zero_shot": [zero_shot_rankings(config, paths, items, queries, depth)]} if settings.zero_shot_baseline else {}
    )
    return runs | {
        "random": [
            random_rankings(catalog, queries["query_id"], depth, seed) for seed in range(settings.random_baseline_draws)
        ]
    }


def scores(runs: dict, relevant: dict, cold: set[str], ks) -> dict:
    """Each ranker's metrics over every query, then over the cold ones."""
    result = {name: _rounded(mean_metrics(run, relevant, ks)) for name, run in runs.items()}
    cold_relevant = {q: items for q, items in relevant.items() if q in cold}
    result["cold"] = {"queries": len(cold_relevant)}
    if cold_relevant:
        result["cold"] |= {name: _rounded(mean_metrics(run, cold_relevant, ks)) for name, run in runs.items()}
    return result


def index_recall(retriever, paths: Paths, queries, hits) -> float:
    """Recall@10 of the index against exact search over the exported embeddings, on these queries (EXACTNESS)."""
    from smar.retrieval.export import read_embeddings

    embeddings, _ = read_embeddings(require(paths.embeddings.root, "export"), mmap=True)
    exact = retriever.exact_top_ids(queries["text"].tolist(), embeddings, EXACTNESS.k)
    return metrics.recall_against_exact(hits.item_ids, exact, EXACTNESS.k)


def write_evaluation(
    paths: Paths, result: dict, runs: dict, relevant: dict, cold: set[str], queries, views: list[str], settings
) -> None:
    """metrics.json, the recall curve (CSV and plot) and per-query results, replacing the last evaluation only
    when all are written."""
    import pandas as pd

    curve_ks = sorted({1, 5, *range(10, settings.plot_max_k + 1, 10), *settings.ks})
    curve = pd.DataFrame(
        {"k": curve_ks}
        | {
            name: [mean_metrics(run, relevant, (k,))[Metric("recall", k).key] for k in curve_ks]
            for name, run in runs.items()
        }
    )
    rankings = runs["model"][0]
    per_query = pd.DataFrame(
        [
            {
                "query_id": q,
                "text": t,
                "relevant": len(relevant[q]),
                "cold": q in cold,
                "index": view,
                "ranking": rankings[q],
            }
            | metrics.per_query_metrics(rankings[q], relevant[q], settings.ks)
            for q, t, view in zip(queries["query_id"], queries["text"], views)
        ]
    )
    with replace_on_success(paths.evaluation.root) as scratch:
        files = EvaluationFiles(scratch)
        files.metrics.write_text(json.dumps(result, indent=2) + "\n")
        curve.to_csv(files.recall_curve, index=False)
        per_query.to_parquet(files.per_query, index=False)
        plot_recall_curve(curve, files.recall_plot)


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 6) for name, value in scores.items()}
