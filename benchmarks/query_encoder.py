"""The served query tower three ways: PyTorch, ONNX Runtime (what smar serves), int8 dynamic quantisation.

    make run                                          # a trained model in outputs/
    .venv/bin/python benchmarks/query_encoder.py      # latency at batch 1, 16, 64; vector drift; Recall@10

For each way: the median time to encode a batch of test queries (`--repeats` timings each,
the ways interleaved so that a busy machine slows them alike), how far its vectors move from
PyTorch's (1 - cosine, mean and worst), and Recall@10 of the test queries searched in the
exported index. Writes benchmarks/results/query_encoder.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=Path, default=ROOT / "outputs")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    import numpy as np
    import torch

    from smar.core.metrics import retrieval_metrics
    from smar.data.dataset import load_dataset
    from smar.model.checkpoint import load_model
    from smar.model.inference import encode_texts
    from smar.model.onnx_query import load_query_onnx
    from smar.retrieval.export import read_embeddings
    from smar.retrieval.index import exact_search

    model, tokenizer = load_model(args.outputs / "model")
    onnx = load_query_onnx(args.outputs / "model")
    if onnx is None:
        sys.exit(f"{args.outputs / 'model'}: no query_encoder.onnx; train with the current code first.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        int8 = copy.deepcopy(model)
        int8.query_encoder = torch.ao.quantization.quantize_dynamic(
            int8.query_encoder, {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8
        )
    ways = {
        "PyTorch (fp32)": lambda texts: encode_texts(model, tokenizer, texts).numpy(),
        "ONNX Runtime (fp32), served": lambda texts: onnx.encode(tokenizer, texts),
        "PyTorch int8 dynamic (per-channel)": lambda texts: encode_texts(int8, tokenizer, texts).numpy(),
    }
    dataset = load_dataset(args.data)
    queries = dataset.split_queries("test")
    texts, relevant = queries["text"].tolist(), dataset.relevant_items("test")
    embeddings, item_ids = read_embeddings(args.outputs / "embeddings")
    [view] = list(embeddings) if len(embeddings) == 1 else ["multimodal"]
    reference = ways["PyTorch (fp32)"](texts)
    results = {"queries": len(texts), "view": view, "ways": {}}
    timings = {name: {batch: [] for batch in args.batches} for name in ways}
    for _ in range(args.repeats):
        for batch in args.batches:
            sample = (texts * (1 + batch // len(texts)))[:batch]
            for name, encode in ways.items():
                started = time.perf_counter()
                encode(sample)
                timings[name][batch].append(time.perf_counter() - started)
    for name, encode in ways.items():
        vectors = encode(texts)
        cosine = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
        top = exact_search(embeddings[view], np.arange(len(item_ids), dtype=np.int64), vectors, 10)
        rankings = {q: [item_ids[i] for i in row] for q, row in zip(queries["query_id"], top)}
        results["ways"][name] = {
            "ms_per_batch": {batch: round(1000 * statistics.median(timings[name][batch]), 2) for batch in args.batches},
            "drift_mean": round(float(1 - cosine.mean()), 6),
            "drift_worst": round(float(1 - cosine.min()), 6),
            "recall_at_10": round(retrieval_metrics(rankings, relevant, ks=(10,))["recall_at_10"], 6),
        }
    write(results, args)


def write(results: dict, args) -> None:
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "query_encoder.json").write_text(json.dumps(results, indent=2) + "\n")
    batches = args.batches
    lines = [
        f"The query tower on {results['queries']} test queries; medians of {args.repeats} timings per batch size, "
        f"the ways interleaved.",
        "",
        "| encoder | "
        + " | ".join(f"batch {b} (ms)" for b in batches)
        + " | 1 - cosine to PyTorch, mean / worst | Recall@10 |",
        "|---|" + "---|" * (len(batches) + 2),
    ]
    base = results["ways"]["PyTorch (fp32)"]
    for name, way in results["ways"].items():
        cells = [f"{way['ms_per_batch'][b]} ({base['ms_per_batch'][b] / way['ms_per_batch'][b]:.1f}x)" for b in batches]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {way['drift_mean']:.2g} / {way['drift_worst']:.2g} | {way['recall_at_10']:.4f} |"
        )
    (args.results / "query_encoder.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
