"""Step 5, evaluate: index + query encoder + held-out queries -> metrics, per-query results, plots.

Metrics are reported beside a random-ranking baseline over the same catalog and queries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from smar.config import SmarConfig
from smar.errors import DatasetError
from smar.paths import Paths, replace_on_success, require

log = logging.getLogger(__name__)

Search = Callable[[list[str], int], list[list[str]]]


def rank(search: Search, queries, k: int) -> dict[str, list[str]]:
    """query_id -> ranked item ids, searching in batches."""
    rankings: dict[str, list[str]] = {}
    for start in range(0, len(queries), 512):
        batch = queries.iloc[start : start + 512]
        rankings.update(zip(batch["query_id"], search(batch["text"].tolist(), k)))
    return rankings


def random_rankings(item_ids: list[str], query_ids, k: int, seed: int) -> dict[str, list[str]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    k = min(k, len(item_ids))
    return {q: [item_ids[i] for i in rng.choice(len(item_ids), size=k, replace=False)] for q in query_ids}


def evaluate(config: SmarConfig, paths: Paths) -> dict:
    import pandas as pd

    from smar import metrics, tracking
    from smar.dataset import load_dataset
    from smar.export import read_embeddings
    from smar.retriever import Retriever

    settings = config.evaluate
    dataset = load_dataset(paths.data)
    queries = dataset.split_queries(settings.split)
    relevant = dataset.relevant_items(settings.split)
    if queries.empty:
        raise DatasetError(f"{paths.data / 'qrels.parquet'}: the '{settings.split}' split has no queries to evaluate.")
    retriever = Retriever(require(paths.model_dir, "train"), require(paths.index_dir, "index"))
    depth = max(*settings.ks, settings.plot_max_k)
    hits = retriever.search(queries["text"].tolist(), depth)
    rankings = dict(zip(queries["query_id"], hits.item_ids))
    model_scores = metrics.retrieval_metrics(rankings, relevant, settings.ks)
    embeddings, _ = read_embeddings(require(paths.embeddings_dir, "export"), mmap=True)
    exact = retriever.exact_top_ids(queries["text"].tolist(), embeddings, 10)
    ann_recall = sum(len(set(found[:10]) & set(best)) / len(best) for found, best in zip(hits.item_ids, exact) if best) / len(exact)

    catalog = dataset.items["item_id"].astype(str).tolist()
    draws = [random_rankings(catalog, queries["query_id"], depth, seed) for seed in range(settings.random_baseline_draws)]

    def averaged_over_draws(ks) -> dict[str, float]:
        scores = [metrics.retrieval_metrics(draw, relevant, ks) for draw in draws]
        return {name: sum(s[name] for s in scores) / len(scores) for name in scores[0]}

    random_scores = averaged_over_draws(settings.ks)
    curve_ks = sorted({1, 5, *range(10, settings.plot_max_k + 1, 10), *settings.ks})
    curve = pd.DataFrame(
        {
            "k": curve_ks,
            "model": [metrics.retrieval_metrics(rankings, relevant, (k,))[f"recall@{k}"] for k in curve_ks],
            "random": [averaged_over_draws((k,))[f"recall@{k}"] for k in curve_ks],
        }
    )
    per_query = pd.DataFrame(
        [
            {"query_id": q, "text": t, "relevant": len(relevant[q]), "index": view, "ranking": rankings[q]}
            | metrics.per_query_metrics(rankings[q], relevant[q], settings.ks)
            for q, t, view in zip(queries["query_id"], queries["text"], hits.views)
        ]
    )
    result = {
        "split": settings.split,
        "queries": len(queries),
        "items": len(catalog),
        "model": _rounded(model_scores),
        "random": _rounded(random_scores),
        "served_by_index": {view: hits.views.count(view) for view in sorted(set(hits.views))},
        "index": {"factory": json.loads((paths.index_dir / "build.json").read_text())["factory"], "recall_at_10_vs_exact": round(ann_recall, 6)},
    }
    with replace_on_success(paths.evaluation_dir) as scratch:
        (scratch / paths.metrics_file.name).write_text(json.dumps(result, indent=2) + "\n")
        curve.to_csv(scratch / paths.recall_curve_file.name, index=False)
        per_query.to_parquet(scratch / "per_query.parquet", index=False)
        _plot_recall_curve(curve, scratch / "recall_at_k.png")

    mlflow = tracking.configure()
    with mlflow.start_run(run_id=tracking.run_id_of(paths.model_dir)):
        mlflow.log_metrics({f"{settings.split}_{_metric_key(name)}": value for name, value in model_scores.items()}
                           | {f"{settings.split}_index_recall_at_10_vs_exact": ann_recall})
        mlflow.log_artifacts(str(paths.evaluation_dir), artifact_path="evaluation")
    return result


def _metric_key(name: str) -> str:
    return name.replace("@", "_at_")


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 6) for name, value in scores.items()}


def _plot_recall_curve(curve, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5), dpi=120)
    axes.plot(curve["k"], curve["model"], marker="o", label="model")
    axes.plot(curve["k"], curve["random"], linestyle="--", label="random ranking")
    axes.set(xlabel="K", ylabel="Recall@K", ylim=(0, 1), title="Recall@K on held-out queries")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def format_table(result: dict) -> str:
    """The evaluation table: one row per metric, model beside the random baseline."""
    lines = [f"{'metric':<14}{'model':>10}{'random':>10}", "-" * 34]
    for name, value in result["model"].items():
        lines.append(f"{name:<14}{value:>10.4f}{result['random'][name]:>10.4f}")
    return "\n".join(lines)
