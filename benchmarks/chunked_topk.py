"""Ranking a catalog for many queries: one dense score matrix against the chunked top-k (smar.core.topk).

    .venv/bin/python benchmarks/chunked_topk.py                  # 1 to 2 minutes on 2 cores
    .venv/bin/python benchmarks/chunked_topk.py --threads 1 --sizes 3000 100000   # one core each: -1-thread.md
    .venv/bin/python benchmarks/chunked_topk.py --sizes 3000 --runs 1

Random unit vectors of dimension 384 (MiniLM's), 1000 queries, top 10, at 3k, 30k, 100k and 300k
items. Three ways to rank, each run 3 times (medians reported):
- dense (torch): `(queries @ items.T).topk(10)`, how training's validation and routing head ranked
  before: the whole [queries x items] matrix at once;
- chunked (torch): `smar.core.topk.top_k`, QUERY_CHUNK x ITEM_CHUNK scores a step, each item chunk's
  top 10 merged into the running top 10;
- chunked (FAISS): the same chunks and merge, each chunk searched by `faiss.knn` (IndexFlatIP's search).
Each way runs in a process of its own per size (so no library's threads wait on another's). Per way:
how far the process's peak resident memory rose during its first ranking above where it stood
before (/proc/self/status VmHWM, reset after the heap's free memory is handed back), so the inputs
are not counted; then wall and CPU seconds, the ways taking turns in each of the 3 rounds so that
other work on the shared machine slows them alike; and the share of queries whose top 10 is the
dense ranking's, in the same order. Writes benchmarks/results/chunked-topk.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM, K = 384, 10
WAYS = ("dense (torch)", "chunked (torch)", "chunked (FAISS)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 30_000, 100_000, 300_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, help="math threads per process (default: the libraries' own, all cores)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.threads:  # the workers read these when torch, MKL, OpenBLAS and FAISS start
        os.environ.update({name: str(args.threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    from smar.core.topk import ITEM_CHUNK, QUERY_CHUNK

    results = {
        "queries": args.queries,
        "dim": DIM,
        "k": K,
        "runs": args.runs,
        "query_chunk": QUERY_CHUNK,
        "item_chunk": ITEM_CHUNK,
        "cpus": os.cpu_count(),
        "threads": args.threads or os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "sizes": {},
    }
    context = multiprocessing.get_context("spawn")
    for size in args.sizes:
        # one process per way, so no library's threads wait on another's; the ways take turns in each round
        workers = {way: context.Pool(1, initializer=start_worker, initargs=(size, args.queries, way)) for way in WAYS}
        try:
            measured = {way: {"peak_mib": workers[way].apply(peak_growth)} for way in WAYS}  # also the warm-up
            timed = {way: [] for way in WAYS}
            for round_number in range(args.runs):
                turn = round_number % len(WAYS)
                for way in WAYS[turn:] + WAYS[:turn]:
                    timed[way].append(workers[way].apply(timed_run))
        finally:
            for pool in workers.values():
                pool.terminate()
        dense_rows = timed[WAYS[0]][-1][2]
        for way in WAYS:
            wall, cpu, rows = zip(*timed[way])
            measured[way] |= {
                "seconds": round(statistics.median(wall), 3),
                "cpu_seconds": round(statistics.median(cpu), 3),
                "all_seconds": [round(s, 3) for s in wall],
                "same_ranking_as_dense": round(float((rows[-1] == dense_rows).all(axis=1).mean()), 4),
            }
        results["sizes"][size] = {"dense_scores_mib": round(args.queries * size * 4 / 2**20, 1), "ways": measured}
        print(size, json.dumps(results["sizes"][size]), flush=True)
    write(results, args.results, "chunked-topk" + (f"-{args.threads}-thread" if args.threads else ""))


WORKER = {}  # in a worker process: its way of ranking and its vectors


def start_worker(size: int, queries: int, way: str) -> None:
    import numpy as np

    rng = np.random.default_rng(size)
    WORKER.update(rank=RANK[way], queries=unit_vectors(rng, queries), items=unit_vectors(rng, size))
    WORKER["rank"](WORKER["queries"][:50], WORKER["items"][:5000])  # the libraries' own start-up


def peak_growth() -> float:
    """MiB the process's peak resident memory rises during one ranking, above where it stood before."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)  # memory freed before goes back to the system: the peak is the run's own
    reset_peak()
    before = resident_mib()
    WORKER["rank"](WORKER["queries"], WORKER["items"])
    return round(peak_mib() - before, 1)


def timed_run():
    """(wall seconds, CPU seconds of the process's threads, rows) of one ranking."""
    started, started_cpu = time.perf_counter(), time.process_time()
    rows = WORKER["rank"](WORKER["queries"], WORKER["items"])
    return time.perf_counter() - started, time.process_time() - started_cpu, rows


def unit_vectors(rng, count: int):
    import numpy as np

    vectors = rng.standard_normal((count, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def dense_torch(queries, items):
    import torch

    with torch.inference_mode():
        return (torch.from_numpy(queries) @ torch.from_numpy(items).T).topk(min(K, len(items)), dim=1).indices.numpy()


def chunked_torch(queries, items):
    import torch

    from smar.core.topk import top_k

    return top_k(torch.from_numpy(queries), torch.from_numpy(items), K)[1]


def chunked_faiss(queries, items):
    """The same chunks and merge as smar.core.topk, each chunk searched by FAISS."""
    import faiss
    import numpy as np

    from smar.core.topk import ITEM_CHUNK, QUERY_CHUNK, balanced_spans

    k = min(K, len(items))
    best_scores, best_rows = None, None
    for item_start, item_stop in balanced_spans(len(items), ITEM_CHUNK):
        found = [
            faiss.knn(queries[start:stop], items[item_start:item_stop], k, metric=faiss.METRIC_INNER_PRODUCT)
            for start, stop in balanced_spans(len(queries), QUERY_CHUNK)
        ]
        scores, rows = np.vstack([f[0] for f in found]), np.vstack([f[1] for f in found]) + item_start
        if best_scores is not None:
            scores, rows = np.hstack([best_scores, scores]), np.hstack([best_rows, rows])
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            scores, rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
        best_scores, best_rows = scores, rows
    return best_rows


RANK = {"dense (torch)": dense_torch, "chunked (torch)": chunked_torch, "chunked (FAISS)": chunked_faiss}


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from the resident memory now


def resident_mib() -> float:
    return _status_kib("VmRSS") / 1024


def peak_mib() -> float:
    return _status_kib("VmHWM") / 1024


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())[1])


def write(results: dict, directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    chunk_mib = results["query_chunk"] * results["item_chunk"] * 4 / 2**20
    dense, torch_way, faiss_way = WAYS
    lines = [
        f"Top {results['k']} of {results['queries']} queries over random unit vectors (dim {results['dim']}), "
        f"median of {results['runs']} rounds in which the ways take turns, {results['threads']} math threads a "
        f"process on {results['cpus']} CPUs shared with other work (load average "
        f"{results['load_average_at_start']} at the start). Chunks: {results['query_chunk']} queries x "
        f"{results['item_chunk']} items, {chunk_mib:.0f} MiB of scores a step.",
        "",
        "Seconds, wall (CPU), and the share of queries ranked exactly as the dense matrix ranks them:",
        "",
        f"| items | {dense} | {torch_way} | {faiss_way} | {torch_way} / dense | {faiss_way} / {torch_way} "
        "| same: chunked (torch) | same: chunked (FAISS) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, measured in results["sizes"].items():
        ways = measured["ways"]
        cells = [f"{ways[way]['seconds']} ({ways[way]['cpu_seconds']})" for way in WAYS]
        lines.append(
            f"| {int(size):,} | " + " | ".join(cells) + f" | {ways[torch_way]['seconds'] / ways[dense]['seconds']:.2f}x"
            f" | {ways[faiss_way]['seconds'] / ways[torch_way]['seconds']:.2f}x"
            f" | {ways[torch_way]['same_ranking_as_dense']} | {ways[faiss_way]['same_ranking_as_dense']} |"
        )
    lines += [
        "",
        "Peak memory, MiB the process's resident memory rose during one ranking (a fresh process each):",
        "",
        f"| items | dense score matrix | {dense} | {torch_way} | {faiss_way} |",
        "|---|---|---|---|---|",
    ]
    for size, measured in results["sizes"].items():
        ways = measured["ways"]
        lines.append(
            f"| {int(size):,} | {measured['dense_scores_mib']} | "
            + " | ".join(str(ways[way]["peak_mib"]) for way in WAYS)
            + " |"
        )
    (directory / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
