"""The loop learns: a model trained only on what simulated shoppers did, against one trained on
the true labels, on the test queries no shopper searched.

    .venv/bin/python benchmarks/learning_loop.py                        # 3 seeds, 20,000 searches each
    .venv/bin/python benchmarks/learning_loop.py --seeds 0 --searches 5000
    .venv/bin/python benchmarks/learning_loop.py --served-by zero-shot  # a shop's first model serves

For each seed, on the dataset (default: the default catalog), whose test split no shopper searches:
1. the champion: trained on the dataset's own qrels, exported and indexed, as a shop serves it;
   with `--served-by zero-shot` the shoppers are served instead by a shop's first model, the
   towers as initialised (zero-shot MiniLM: one training step at a learning rate that moves no
   weight), which ranks many relevant items low: where position bias should matter most;
2. served by `smar serve`'s app over real HTTP (uvicorn in this process, the model loaded from
   its files, no registry), logging into a scratch directory with `serve.explore_share`;
3. simulated shoppers (`smar simulate`, in a process of their own: the position-based click
   model over the true qrels) send `--searches` searches of the train and valid queries, and
   their events;
4. `from-logs` four times (BUILDS): position bias corrected and not, each at the params file's
   `from_logs.confidence` and with the rates as they are (confidence 0); split by query (the
   simulation lasts minutes, not days);
5. a model trained on each of those datasets alone, with the champion's settings and seed;
6. every model ranks the dataset's test queries: Recall@10 and NDCG@10 against the true labels,
   and the corrected dataset's difference from each uncorrected one (COMPARISONS) gets a paired
   bootstrap interval per seed.
Writes benchmarks/results/learning-loop.{json,md}, after every seed.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SEARCHES = 20_000
MODELS = {
    "champion": "trained on the true qrels",
    "served": "what served the shoppers",
    "logs, bias corrected": "trained on the logs alone, position bias corrected",
    "logs, not corrected": "trained on the logs alone, no correction",
    "logs, corrected, rates as such": "corrected, every rate at min_rate a label (from_logs.confidence 0)",
    "logs, not corrected, rates as such": "no correction, every rate at min_rate a label (from_logs.confidence 0)",
}
COMPARISONS = {  # the corrected dataset minus: the same rule uncorrected, and the uncorrected rates as such
    "corrected_minus_not": "logs, not corrected",
    "corrected_minus_not_rates_as_such": "logs, not corrected, rates as such",
}
BUILDS = {  # dataset name: (from_logs.position_bias, from_logs.confidence or None for the params file's)
    "logs, bias corrected": ("explored", None),
    "logs, not corrected": ("none", None),
    "logs, corrected, rates as such": ("explored", 0.0),
    "logs, not corrected, rates as such": ("none", 0.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--searches", type=int, default=SEARCHES, help="a seed (another number: -<N>k in the name)")
    parser.add_argument(
        "--served-by",
        choices=("champion", "zero-shot"),
        default="champion",
        help="who serves the shoppers (zero-shot: results in learning-loop-zero-shot.{json,md})",
    )
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    from smar.core.process import setup

    setup()
    from smar.core.config import load_config

    scratch = Path(tempfile.mkdtemp(prefix="smar-loop-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    base = load_config(args.params)
    runs = []
    for seed in args.seeds:
        first_features = scratch / f"seed-{args.seeds[0]}" / "champion" / "features"  # one catalog: made once
        runs.append(
            one_seed(base, args.data, scratch / f"seed-{seed}", seed, args.searches, first_features, args.served_by)
        )
        print(json.dumps(runs[-1]), flush=True)
        write(runs, args)


def one_seed(base, data: Path, scratch: Path, seed: int, searches: int, features: Path, served_by: str) -> dict:
    from smar.core.intervals import paired_bootstrap
    from smar.core.paths import Paths
    from smar.data.dataset import load_dataset
    from smar.traffic.dataset import from_logs
    from smar.traffic.log import SearchLog

    config = base.model_copy(update={"train": base.train.model_copy(update={"seed": seed})})
    champion = Paths(data, scratch / "champion")
    shipped(config, champion, features)
    serving = champion
    if served_by == "zero-shot":
        serving = Paths(data, scratch / "zero-shot")
        untrained = {"max_steps": 1, "learning_rate": 1e-12, "checkpoint_every_steps": 0}
        shipped(config.model_copy(update={"train": config.train.model_copy(update=untrained)}), serving, features)
    log = SearchLog(scratch / "log", max_bytes=64 << 20, max_seconds=3600).start()
    with served(config, serving, log) as url:
        started = time.perf_counter()
        shoppers = [sys.executable, "-m", "smar", "simulate", "--url", url, "--data", str(data)]
        shoppers += ["--searches", str(searches), "--seed", str(seed)]
        done = subprocess.run(shoppers, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"smar simulate failed:\n{done.stderr[-3000:]}")
        sent = json.loads(done.stdout.strip().splitlines()[-1])
        simulate_seconds = time.perf_counter() - started
    log.close()

    truth = load_dataset(data)
    relevant, texts = truth.relevant_items("test"), truth.queries.set_index("query_id")["text"]
    run = {"seed": seed, "sent": sent, "simulate_seconds": round(simulate_seconds, 1), "models": {}, "datasets": {}}
    per_query = {}
    run["models"]["champion"], per_query["champion"] = scores(champion, relevant, texts)
    run["models"]["served"], _ = scores(serving, relevant, texts)
    for number, (name, (bias, confidence)) in enumerate(BUILDS.items()):
        built = scratch / f"data-{number}"
        update = {"position_bias": bias, "split_by": "query", "seed": seed}
        settings = config.from_logs.model_copy(
            update=update | ({} if confidence is None else {"confidence": confidence})
        )
        manifest = from_logs(scratch / "log", data, built, settings)
        run["datasets"][name] = {
            "counts": manifest["counts"],
            "precision": label_precision(built, data),
            "examination": manifest["source"]["examination"],
        }
        trained = Paths(built, scratch / f"model-{number}")
        shipped(config, trained, champion.outputs / "features")
        run["models"][name], per_query[name] = scores(trained, relevant, texts)
    for comparison, baseline in COMPARISONS.items():  # paired over the test queries: how sure each difference is
        corrected, other = per_query["logs, bias corrected"], per_query[baseline]
        run[comparison] = {
            key: asdict(paired_bootstrap(corrected[key] - other[key], seed=seed))
            for key in ("ndcg_at_10", "recall_at_10")
        }
    return run


def shipped(config, paths, features_from: Path | None = None) -> None:
    """validate -> featurize -> train -> export -> index, untracked. With `features_from` (an
    earlier run on the same catalog), its feature shards are hard-linked in first: featurize
    then reuses every item shard (they are keyed by their inputs) and encodes only the queries."""
    import os
    import shutil

    from smar.pipeline import steps

    if features_from is not None and features_from.is_dir() and not paths.outputs.joinpath("features").exists():
        shutil.copytree(features_from, paths.outputs / "features", copy_function=os.link)
    for step in (steps.validate, steps.featurize, steps.train, steps.export, steps.build_index):
        step(config, paths)


@contextlib.contextmanager
def served(config, paths, log):
    """The model at `paths` behind `smar serve`'s app on a free port, loaded from its files."""
    import httpx
    import uvicorn

    from smar.retrieval.retriever import Retriever
    from smar.serving.app import create_app
    from smar.serving.follower import AliasFollower, LoadedModel

    follower = AliasFollower("learning-loop", "champion", 3600)
    follower.current = LoadedModel("champion", Retriever(paths.model.root, paths.index.root), {})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(follower, config.serve, log), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url}: not ready in 60 s")
        time.sleep(0.2)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def scores(paths, relevant: dict, texts) -> tuple[dict, dict]:
    """Recall@10, NDCG@10 and Recall@50 of the model at `paths` on the true test queries: their
    means, and each query's (arrays in query order)."""
    import numpy as np

    from smar.core.metrics import per_query_metrics
    from smar.retrieval.retriever import Retriever

    query_ids = sorted(q for q in relevant if relevant[q])
    hits = Retriever(paths.model.root, paths.index.root).search([texts[q] for q in query_ids], 50)
    rows = [per_query_metrics(list(found), relevant[q]) for q, found in zip(query_ids, hits.item_ids)]
    each = {key: np.array([row[key] for row in rows]) for key in ("recall_at_10", "ndcg_at_10", "recall_at_50")}
    return {key: round(float(values.mean()), 4) for key, values in each.items()}, each


def label_precision(built: Path, data: Path) -> float:
    """Share of the built qrels that the true qrels call relevant."""
    import pandas as pd

    from smar.traffic.dataset import normalise, query_id

    truth = pd.read_parquet(data / "qrels.parquet")
    texts = pd.read_parquet(data / "queries.parquet").set_index("query_id")["text"]
    true_pairs = {(query_id(normalise(texts[q])), item) for q, item in zip(truth["query_id"], truth["item_id"])}
    qrels = pd.read_parquet(built / "qrels.parquet")
    return round(sum((q, i) in true_pairs for q, i in zip(qrels["query_id"], qrels["item_id"])) / len(qrels), 4)


def write(runs: list[dict], args) -> None:
    def spread(values: list[float]) -> str:
        values = list(values)
        return (
            f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"
        )

    from smar.core.config import load_config

    seeds, rule = [run["seed"] for run in runs], load_config(args.params).from_logs
    server = "the champion" if args.served_by == "champion" else "zero-shot MiniLM (the towers untrained)"
    lines = [
        f"The loop on `{args.data.name}`: {args.searches:,} simulated searches a seed (train and valid queries), "
        f"served by {server}; seeds {seeds}; every model ranks the true test split (mean ± std over seeds). "
        f"A pair is a label when the low end of its rate's Wilson interval at {rule.confidence} reaches "
        f"{rule.min_rate}, with events in {rule.min_searches} searches (`from_logs` in `{args.params.name}`).",
        "",
        "| model | recall@10 | ndcg@10 | recall@50 | vs champion, recall@10 |",
        "|---|---|---|---|---|",
    ]
    champion = [run["models"]["champion"]["recall_at_10"] for run in runs]
    for name, what in MODELS.items():
        values = {
            key: [run["models"][name][key] for run in runs] for key in ("recall_at_10", "ndcg_at_10", "recall_at_50")
        }
        ratio = [v / c for v, c in zip(values["recall_at_10"], champion)]
        lines.append(
            f"| {name}: {what} | {spread(values['recall_at_10'])} | {spread(values['ndcg_at_10'])} | "
            f"{spread(values['recall_at_50'])} | {statistics.mean(ratio):.3f}x |"
        )
    lines += [
        "",
        "| dataset built from the logs | queries | qrels | share of its qrels truly relevant |",
        "|---|---|---|---|",
    ]
    for name in BUILDS:
        built = [run["datasets"][name] for run in runs]
        lines.append(
            f"| {name} | {statistics.mean(b['counts']['queries'] for b in built):.0f} | "
            f"{statistics.mean(b['counts']['qrels'] for b in built):.0f} | {spread(b['precision'] for b in built)} |"
        )
    for comparison, baseline in COMPARISONS.items():
        lines += [
            "",
            f"Bias corrected minus {baseline}, each seed paired over its test queries (mean [95% interval]):",
            "",
            "| seed | test queries | ndcg@10 | recall@10 |",
            "|---|---|---|---|",
        ]
        for run in runs:
            ndcg, recall = (run[comparison][key] for key in ("ndcg_at_10", "recall_at_10"))
            lines.append(f"| {run['seed']} | {ndcg['queries']} | {interval(ndcg)} | {interval(recall)} |")
    name = "learning-loop" if args.served_by == "champion" else f"learning-loop-{args.served_by}"
    if args.searches != SEARCHES:
        name += f"-{args.searches // 1000}k"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{name}.json").write_text(json.dumps({"served_by": args.served_by, "runs": runs}, indent=2) + "\n")
    (args.results / f"{name}.md").write_text("\n".join(lines) + "\n")


def interval(stats: dict) -> str:
    return f"{stats['mean']:+.4f} [{stats['low']:+.4f}, {stats['high']:+.4f}]"


if __name__ == "__main__":
    main()
