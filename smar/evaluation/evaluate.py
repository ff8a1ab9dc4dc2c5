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


def zero_shot_rankings(config: SmarConfig, paths: Paths, items, queries, k: int) -> dict[str, list[str]]:
    """query_id -> ranked item ids of off-the-shelf MiniLM title search, with no training: item
    texts and queries through all-MiniLM-L6-v2, mean-pooled, by cosine. The search a shop would
    run instead of smar. Item states are cached like a frozen encoder's (the same cache)."""
    import numpy as np
    import torch

    from smar.data.contract import item_texts
    from smar.model.feature_cache import text_states
    from smar.model.tokenizer import tokenize
    from smar.model.towers import masked_mean, zero_shot_encoder
    from smar.retrieval.index import exact_search, normalized

    length = config.model.max_text_length
    encoder, tokenizer = zero_shot_encoder(length)
    texts = item_texts(items)
    states, mask = text_states(encoder, tokenizer, texts, length, paths.cache_dir, "items")
    item_vectors = np.concatenate(
        [
            masked_mean(torch.from_numpy(np.array(states[start : start + 4096], dtype=np.float32)), torch.from_numpy(np.array(mask[start : start + 4096]))).numpy()
            for start in range(0, len(texts), 4096)
        ]
    )
    query_texts, query_vectors = queries["text"].tolist(), []
    with torch.inference_mode():
        for start in range(0, len(query_texts), 512):
            tokens = tokenize(tokenizer, query_texts[start : start + 512])
            query_vectors.append(masked_mean(encoder.states(**tokens), tokens["attention_mask"]).numpy())
    item_ids = items["item_id"].astype(str).tolist()
    top = exact_search(item_vectors, np.arange(len(item_ids), dtype=np.int64), normalized(np.concatenate(query_vectors)), min(k, len(item_ids)))
    return {q: [item_ids[i] for i in row if i >= 0] for q, row in zip(queries["query_id"], top)}


def mean_metrics(runs: list[dict], relevant: dict, ks) -> dict[str, float]:
    """The metrics of each ranking run (one for a model, several random draws), averaged."""
    from smar import metrics

    scores = [metrics.retrieval_metrics(rankings, relevant, ks) for rankings in runs]
    return {name: sum(score[name] for score in scores) / len(scores) for name in scores[0]}


def evaluate(config: SmarConfig, paths: Paths) -> dict:
    """Score the model beside a random ranking and zero-shot MiniLM, on every test query and on
    the cold ones (queries about items no training query touched)."""
    import pandas as pd

    from smar import metrics, tracking
    from smar.data.dataset import load_dataset
    from smar.retrieval.export import read_embeddings
    from smar.retrieval.retriever import Retriever

    settings = config.evaluate
    dataset = load_dataset(paths.data)
    queries = dataset.split_queries(settings.split)
    relevant = dataset.relevant_items(settings.split)
    if queries.empty:
        raise DatasetError(f"{paths.data / 'qrels.parquet'}: the '{settings.split}' split has no queries to evaluate.")
    cold = dataset.cold_queries(settings.split)
    retriever = Retriever(require(paths.model_dir, "train"), require(paths.index_dir, "index"))
    depth = max(*settings.ks, settings.plot_max_k)
    hits = retriever.search(queries["text"].tolist(), depth)
    rankings = dict(zip(queries["query_id"], hits.item_ids))
    embeddings, _ = read_embeddings(require(paths.embeddings_dir, "export"), mmap=True)
    exact = retriever.exact_top_ids(queries["text"].tolist(), embeddings, 10)
    ann_recall = sum(len(set(found[:10]) & set(best)) / len(best) for found, best in zip(hits.item_ids, exact) if best) / len(exact)

    catalog = dataset.items["item_id"].astype(str).tolist()
    runs = {
        "model": [rankings],
        "zero_shot": [zero_shot_rankings(config, paths, dataset.items, queries, depth)] if settings.zero_shot_baseline else None,
        "random": [random_rankings(catalog, queries["query_id"], depth, seed) for seed in range(settings.random_baseline_draws)],
    }
    runs = {name: run for name, run in runs.items() if run is not None}
    cold_relevant = {q: items for q, items in relevant.items() if q in cold}
    result = {"split": settings.split, "queries": len(queries), "items": len(catalog)}
    result |= {name: _rounded(mean_metrics(run, relevant, settings.ks)) for name, run in runs.items()}
    result["cold"] = {"queries": len(cold_relevant)}
    if cold_relevant:
        result["cold"] |= {name: _rounded(mean_metrics(run, cold_relevant, settings.ks)) for name, run in runs.items()}
    result["served_by_index"] = {view: hits.views.count(view) for view in sorted(set(hits.views))}
    result["index"] = {"factory": json.loads((paths.index_dir / "build.json").read_text())["factory"], "recall_at_10_vs_exact": round(ann_recall, 6)}

    curve_ks = sorted({1, 5, *range(10, settings.plot_max_k + 1, 10), *settings.ks})
    curve = pd.DataFrame({"k": curve_ks} | {name: [mean_metrics(run, relevant, (k,))[f"recall@{k}"] for k in curve_ks] for name, run in runs.items()})
    per_query = pd.DataFrame(
        [
            {"query_id": q, "text": t, "relevant": len(relevant[q]), "cold": q in cold, "index": view, "ranking": rankings[q]}
            | metrics.per_query_metrics(rankings[q], relevant[q], settings.ks)
            for q, t, view in zip(queries["query_id"], queries["text"], hits.views)
        ]
    )
    with replace_on_success(paths.evaluation_dir) as scratch:
        (scratch / paths.metrics_file.name).write_text(json.dumps(result, indent=2) + "\n")
        curve.to_csv(scratch / paths.recall_curve_file.name, index=False)
        per_query.to_parquet(scratch / "per_query.parquet", index=False)
        _plot_recall_curve(curve, scratch / "recall_at_k.png")

    mlflow = tracking.configure()
    with mlflow.start_run(run_id=tracking.run_id_of(paths.model_dir)):
        mlflow.log_metrics(tracked_metrics(result) | {f"{settings.split}_index_recall_at_10_vs_exact": ann_recall})
        mlflow.log_artifacts(str(paths.evaluation_dir), artifact_path="evaluation")
    return result


def tracked_metrics(result: dict) -> dict[str, float]:
    """The evaluation as MLflow metrics: test_recall_at_10, test_zero_shot_recall_at_10,
    test_cold_recall_at_10, test_cold_zero_shot_recall_at_10, ... and test_cold_queries."""
    split, tracked = result["split"], {f"{result['split']}_cold_queries": result["cold"]["queries"]}
    for scope, section in (("", result), ("cold_", result["cold"])):
        for ranker, prefix in (("model", ""), ("zero_shot", "zero_shot_")):
            for name, value in section.get(ranker, {}).items():
                tracked[f"{split}_{scope}{prefix}{_metric_key(name)}"] = value
    return tracked


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
    if "zero_shot" in curve:
        axes.plot(curve["k"], curve["zero_shot"], marker=".", label="zero-shot MiniLM")
    axes.plot(curve["k"], curve["random"], linestyle="--", label="random ranking")
    axes.set(xlabel="K", ylabel="Recall@K", ylim=(0, 1), title="Recall@K on held-out queries")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


RANKERS = {"model": "model", "zero_shot": "zero-shot", "random": "random"}


def format_table(result: dict) -> str:
    """The evaluation tables: one row per metric, the model beside zero-shot MiniLM and a random
    ranking; over every query, then over the cold ones."""
    lines = [_table(result)]
    cold = result["cold"]
    if cold["queries"] == result["queries"]:
        lines += ["", f"Cold: all {cold['queries']} queries are about items no training query touched."]
    elif cold["queries"]:
        lines += ["", f"Cold: {cold['queries']} of {result['queries']} queries about items no training query touched:", _table(cold)]
    else:
        lines += ["", "Cold: no query is about items that training never saw (split_by groups of items to measure it)."]
    if "zero_shot" in result:
        lines.append(_against_zero_shot(result))
    return "\n".join(lines)


def _against_zero_shot(result: dict) -> str:
    """One line: did training help, over every query and over the cold ones?"""

    def compared(section: dict) -> str:
        model, zero = section["model"]["recall@10"], section["zero_shot"]["recall@10"]
        return f"{model:.4f} vs {zero:.4f} ({model / zero:.2f}x)" if zero else f"{model:.4f} vs {zero:.4f}"

    line = f"Recall@10 against zero-shot MiniLM (no training): {compared(result)} over all queries"
    if result["cold"]["queries"]:
        line += f", {compared(result['cold'])} on the cold ones"
    return line + "."


def _table(section: dict) -> str:
    shown = [ranker for ranker in RANKERS if ranker in section]
    lines = [f"{'metric':<14}" + "".join(f"{RANKERS[r]:>11}" for r in shown), "-" * (14 + 11 * len(shown))]
    for name in section["model"]:
        lines.append(f"{name:<14}" + "".join(f"{section[r][name]:>11.4f}" for r in shown))
    return "\n".join(lines)
