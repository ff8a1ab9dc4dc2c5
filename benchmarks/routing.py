"""What stage 2 (the routing head) has to learn from, and the most it could gain.

    .venv/bin/python benchmarks/quality.py --split-by category --kinds smar --params benchmarks/params.routing.yaml \
        --name quality-category-routing            # trains with adaptive_routing; prints where its outputs are
    .venv/bin/python benchmarks/routing.py --data SCRATCH/data --outputs SCRATCH/smar-0 SCRATCH/smar-1 SCRATCH/smar-2

For each trained model (with its multimodal and text indexes) and each split: Recall@10 of
every query through the multimodal index, through the text index, as the head routes it, and
with an oracle that picks the better index per query (the ceiling of any routing); the share
of queries each index serves better; the share the head sends to the text index. Writes
benchmarks/results/routing.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--outputs", type=Path, nargs="+", required=True)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    from smar.data.dataset import load_dataset

    dataset = load_dataset(args.data)
    rows = [
        dict(model=outputs.name, split=split, **analyse(dataset, outputs, split))
        for outputs in args.outputs
        for split in ("train", "valid", "test")
    ]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "routing.json").write_text(json.dumps(rows, indent=2) + "\n")
    columns = ["multimodal", "text", "routed", "oracle", "multimodal_better", "text_better", "routed_to_text"]
    lines = [
        "Recall@10 per index, as routed, and with the better index per query (oracle); shares of queries "
        "where each index is better (Recall@10) and that the head sends to text.",
        "",
        "| model | split | queries | " + " | ".join(columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    lines += [
        f"| {r['model']} | {r['split']} | {r['queries']} | " + " | ".join(f"{r[c]:.4f}" for c in columns) + " |"
        for r in rows
    ]
    (args.results / "routing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def analyse(dataset, outputs: Path, split: str) -> dict:
    import numpy as np

    from smar.core.metrics import per_query_metrics
    from smar.retrieval.export import read_embeddings
    from smar.retrieval.retriever import Retriever

    retriever = Retriever(outputs / "model", outputs / "index")
    embeddings, item_ids = read_embeddings(outputs / "embeddings")
    queries, relevant = dataset.split_queries(split), dataset.relevant_items(split)
    vectors, views = retriever.encode(queries["text"].tolist())
    recall = {}
    for view in ("multimodal", "text"):
        top = np.argsort(-(vectors @ embeddings[view].T), axis=1)[:, :10]
        recall[view] = np.array(
            [
                per_query_metrics([item_ids[i] for i in row], relevant[q], (10,))["recall_at_10"]
                for q, row in zip(queries["query_id"], top)
            ]
        )
    to_text = np.array(views) == "text"
    return {
        "queries": len(queries),
        "multimodal": float(recall["multimodal"].mean()),
        "text": float(recall["text"].mean()),
        "routed": float(np.where(to_text, recall["text"], recall["multimodal"]).mean()),
        "oracle": float(np.maximum(recall["multimodal"], recall["text"]).mean()),
        "multimodal_better": float((recall["multimodal"] > recall["text"]).mean()),
        "text_better": float((recall["text"] > recall["multimodal"]).mean()),
        "routed_to_text": float(to_text.mean()),
    }


if __name__ == "__main__":
    main()
