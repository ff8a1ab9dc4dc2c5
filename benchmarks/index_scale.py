"""Index scale: build time, memory, search latency and recall of smar's FAISS indexes against exact search.

    .venv/bin/python benchmarks/index_scale.py                              # 10k, 100k, 1M items; 3 runs each
    .venv/bin/python benchmarks/index_scale.py --vectors uniform            # the worst case
    .venv/bin/python benchmarks/index_scale.py --sizes 10000 --runs 1       # a quick look
    .venv/bin/python benchmarks/index_scale.py --sizes 1000000 --only IVF --runs 1

Two kinds of random vectors of the model's dimension (64), normalised (`--vectors`):
- `uniform`: directions uniform on the sphere. Every direction counts equally, so the
  distances between points concentrate: the hardest case there is for an approximate index.
- `spectrum` (the default): Gaussian with the mean and covariance of a trained model's
  item embeddings (items) and of its encoded queries (queries), read from an export
  directory (`--embeddings`, default outputs/embeddings). The same variance per principal
  direction as real embeddings, but none of their cluster structure, which would make
  search easier still.
Per size, each index type is built with the index step's own code (`smar.retrieval.index.make_index`,
then `tune` to Recall@10 >= 0.95 of exact search on 500 tuning queries) and measured on 1000
other queries:
- build seconds (add + train + tune) and the peak resident memory of the process;
- index size (serialised bytes);
- latency of one query at a time (p50, p99), as the search service asks, and throughput
  (QPS) of the 1000 queries in one batched call;
- Recall@10 against exact search (Flat), whose own latency is the reference.
Each run is a fresh process. Writes benchmarks/results/index_scale-<vectors>.json (every
run) and .md (medians over runs).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM, TUNING_QUERIES, QUERIES, K, TARGET = 64, 500, 1000, 10, 0.95


def factories(size: int) -> list[str]:
    from smar.retrieval.index import choose_factory

    chosen = choose_factory("auto", size, DIM)
    large = choose_factory("auto", 10**9, DIM).split(",", 1)[1]  # the IVF-PQ that auto picks past 5M items
    ivf = f"IVF{2 ** round(math.log2(4 * math.sqrt(size)))},{large}"
    return list(dict.fromkeys(["Flat", chosen, "HNSW32,Flat"] + ([ivf] if size >= 100_000 else [])))


def draw(size: int, queries: int, seed: int, spectrum: dict | None):
    """(items, queries) as float32 unit vectors: uniform directions, or Gaussians matching `spectrum`."""
    import numpy as np

    from smar.retrieval.index import normalized

    rng = np.random.default_rng(seed)
    if spectrum is None:
        return normalized(rng.normal(size=(size, DIM))), normalized(rng.normal(size=(queries, DIM)))
    return tuple(
        normalized(
            rng.multivariate_normal(spectrum[f"{name}_mean"], spectrum[f"{name}_cov"], size=count, method="eigh")
        )
        for name, count in (("items", size), ("queries", queries))
    )


def measured_spectrum(embeddings: Path) -> dict:
    import numpy as np

    from smar.core.paths import EmbeddingFiles
    from smar.retrieval.export import read_embeddings
    from smar.retrieval.index import normalized

    vectors, _ = read_embeddings(embeddings)
    items = normalized(vectors.get("multimodal", next(iter(vectors.values()))))
    queries = normalized(np.load(EmbeddingFiles(embeddings).tuning_queries))
    return {
        "items_mean": items.mean(0),
        "items_cov": np.cov(items.T),
        "queries_mean": queries.mean(0),
        "queries_cov": np.cov(queries.T),
        "items_effective_rank": float(np.exp(_entropy(np.linalg.eigvalsh(np.cov(items.T))))),
    }


def _entropy(eigenvalues) -> float:
    import numpy as np

    p = np.clip(eigenvalues, 1e-12, None) / np.clip(eigenvalues, 1e-12, None).sum()
    return float(-(p * np.log(p)).sum())


def one_run(size: int, factory: str, seed: int, spectrum: dict | None) -> dict:
    import resource
    import time

    import faiss
    import numpy as np

    from smar.retrieval.index import exact_search, make_index, overlap, tune

    vectors, queries = draw(size, TUNING_QUERIES + QUERIES, seed, spectrum)
    tuning, measured = queries[:TUNING_QUERIES], queries[TUNING_QUERIES:]
    ids = np.arange(size, dtype=np.int64)
    started = time.perf_counter()
    index = make_index(factory, vectors, ids)
    tuned = tune(index, vectors, ids, tuning, TARGET, K)
    build_seconds = time.perf_counter() - started
    exact = exact_search(vectors, ids, measured, K)

    latencies = []
    for query in measured:
        began = time.perf_counter()
        index.search(query[None, :], K)
        latencies.append((time.perf_counter() - began) * 1000)
    began = time.perf_counter()
    found = index.search(measured, K)[1]
    batch_seconds = time.perf_counter() - began
    return {
        "vectors": "spectrum" if spectrum else "uniform",
        "items": size,
        "factory": factory,
        "seed": seed,
        "tuning": tuned,
        "build_seconds": build_seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "index_mib": len(faiss.serialize_index(index)) / 2**20,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "qps_batched": QUERIES / batch_seconds,
        "recall_at_10_vs_exact": overlap(found, exact),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", help="Measure only index types whose factory string contains this (e.g. IVF).")
    parser.add_argument("--vectors", choices=["spectrum", "uniform"], default="spectrum")
    parser.add_argument(
        "--embeddings",
        type=Path,
        default=ROOT / "outputs" / "embeddings",
        help="Export directory for --vectors spectrum.",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    spectrum = measured_spectrum(args.embeddings) if args.vectors == "spectrum" else None
    if spectrum:
        print(
            f"spectrum of {args.embeddings}: effective rank {spectrum['items_effective_rank']:.1f} of {DIM}", flush=True
        )
    stem = args.results / f"index_scale-{args.vectors}"
    runs = json.loads(stem.with_suffix(".json").read_text())["runs"] if stem.with_suffix(".json").exists() else []
    measured = {
        (size, factory) for size in args.sizes for factory in factories(size) if not args.only or args.only in factory
    }
    runs = [
        run for run in runs if (run["items"], run["factory"]) not in measured
    ]  # a new measurement replaces the old one
    context = multiprocessing.get_context("spawn")
    for size in args.sizes:
        for factory in [f for f in factories(size) if (size, f) in measured]:
            for seed in range(args.runs):
                with context.Pool(1) as pool:  # a fresh process: its peak memory is this index's
                    run = pool.apply(one_run, (size, factory, seed, spectrum))
                runs.append(run)
                print(
                    f"{size} {factory} run {seed + 1}: build {run['build_seconds']:.1f} s, p50 {run['p50_ms']:.3f} ms, "
                    f"p99 {run['p99_ms']:.3f} ms, recall {run['recall_at_10_vs_exact']:.4f} {run['tuning']}",
                    flush=True,
                )
                write_report(runs, stem)


def write_report(runs: list[dict], stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(
        json.dumps({"dim": DIM, "queries": QUERIES, "target_recall": TARGET, "runs": runs}, indent=2) + "\n"
    )
    kind = {
        "uniform": "Uniformly random unit vectors",
        "spectrum": "Random vectors with a trained model's embedding spectrum",
    }[runs[0]["vectors"]]
    lines = [
        f"{kind}, dim {DIM}; {QUERIES} queries one at a time (p50/p99) and in one batch (QPS); "
        f"approximate indexes tuned to Recall@10 >= {TARGET} of exact search on separate tuning queries. "
        "Medians over runs (each a fresh process).",
        "",
        "| items | index | tuned | runs | build s | peak RSS MiB | index MiB | p50 ms | p99 ms | QPS (batch) | "
        "Recall@10 vs exact | p99 vs Flat |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["items"], run["factory"]), []).append(run)
    for (size, factory), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "Flat", kv[0][1])):
        median = {
            key: statistics.median(run[key] for run in group)
            for key in (
                "build_seconds",
                "peak_rss_mib",
                "index_mib",
                "p50_ms",
                "p99_ms",
                "qps_batched",
                "recall_at_10_vs_exact",
            )
        }
        tuned = group[0]["tuning"]
        setting = (
            f"{tuned['parameter']}={statistics.median(run['tuning']['value'] for run in group):g}" if tuned else "exact"
        )
        flat = groups.get((size, "Flat"))
        ratio = f"{median['p99_ms'] / statistics.median(run['p99_ms'] for run in flat):.3f}" if flat else ""
        lines.append(
            f"| {size:,} | {factory} | {setting} | {len(group)} | {median['build_seconds']:.1f} | "
            f"{median['peak_rss_mib']:.0f} | "
            f"{median['index_mib']:.0f} | {median['p50_ms']:.3f} | {median['p99_ms']:.3f} | "
            f"{median['qps_batched']:,.0f} | "
            f"{median['recall_at_10_vs_exact']:.4f} | {ratio} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
