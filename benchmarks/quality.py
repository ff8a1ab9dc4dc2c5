"""Quality benchmark: every model kind, several seeds, on one dataset, through the pipeline's own steps.

    .venv/bin/python benchmarks/quality.py                  # all kinds, seeds 0 1 2, default data
    .venv/bin/python benchmarks/quality.py --kinds smar text_only --seeds 0
    .venv/bin/python benchmarks/quality.py --params params.yaml benchmarks/params.pretrained.yaml \
        --kinds smar text_only late_fusion --epochs 1 --name quality-pretrained  # encoders side by side

Writes benchmarks/results/NAME.json (every run and the mean/std per kind) and NAME.md.
Besides the overall metrics, test queries that name a colour or pattern are scored twice:
against their relevant items whose titles state that look ("look in title"), and against
those whose titles do not, so only the image shows it ("look only in image"). With several
--params files every kind runs with each, and rows are labelled "kind · file name".
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ["smar", "text_only", "image_only", "late_fusion", "smar_fused_only", "smar_no_xattn"]
METRICS = ["recall@10", "recall@50", "precision@50", "f1@50", "mrr@10", "ndcg@10"]
SLICES = {"look in title": True, "look only in image": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=KINDS, choices=KINDS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--params", nargs="+", type=Path, default=[ROOT / "params.yaml"])
    parser.add_argument("--epochs", type=int, help="Override train.epochs in every params file.")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="quality", help="Results file names: NAME.json and NAME.md.")
    parser.add_argument("--report-only", action="store_true", help="Re-render NAME.md from the runs in NAME.json.")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="smar-quality-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{scratch / 'mlflow.db'}")  # keep benchmark runs apart
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("great_expectations", "alembic", "faiss", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from smar import stages
    from smar.config import load_config
    from smar.dataset import load_dataset
    from smar.paths import Paths

    bases = {path: load_config(path) for path in args.params}
    if args.epochs:
        bases = {path: base.model_copy(update={"train": base.train.model_copy(update={"epochs": args.epochs})}) for path, base in bases.items()}
    split = next(iter(bases.values())).evaluate.split
    dataset = load_dataset(args.data)
    meta = {"data": shown(args.data), "params": [shown(path) for path in args.params], "epochs": args.epochs, "seeds": args.seeds, "split": split}
    best, stem = ceiling(dataset, split), args.results / args.name
    if args.report_only:
        stored = json.loads(stem.with_suffix(".json").read_text())
        write_report(stored["runs"], best, stored["meta"], stem)
        return print(stem.with_suffix(".md").read_text())
    stages.validate(next(iter(bases.values())), Paths(args.data, scratch / "validated"))
    runs = []
    for kind, (params, base), seed in itertools.product(args.kinds, bases.items(), args.seeds):
        label = kind if len(bases) == 1 else f"{kind} · {params.name.removesuffix('.yaml')}"
        config = base.model_copy(
            update={
                "model": base.model.model_copy(update={"kind": kind}),
                "train": base.train.model_copy(update={"seed": seed}),
            }
        )
        paths = Paths(args.data, scratch / f"{label}-{seed}")
        paths.validation_report.parent.mkdir(parents=True)
        paths.validation_report.write_bytes((scratch / "validated" / "validation" / "report.json").read_bytes())
        started = time.perf_counter()
        trained = stages.train(config, paths)
        stages.export(config, paths)
        stages.build_index(config, paths)
        evaluation = stages.evaluate(config, paths)
        runs.append(
            {
                "kind": kind,
                "label": label,
                "params": shown(params),
                "seed": seed,
                "seconds": round(time.perf_counter() - started, 1),
                "train_seconds": round(trained.seconds, 1),
                "overall": evaluation["model"],
                "served_by_index": evaluation["served_by_index"],
                **slice_metrics(dataset, paths, config.evaluate.split),
            }
        )
        print(f"{label} seed {seed}: R@10 {evaluation['model']['recall@10']:.4f} R@50 {evaluation['model']['recall@50']:.4f}", flush=True)
        write_report(runs, best, meta, stem)  # after every run: a long benchmark keeps what it has
    print(stem.with_suffix(".md").read_text())


def shown(path: Path) -> str:
    """A path as the results show it: relative to the project root when it lies inside."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write_report(runs: list[dict], best: dict, meta: dict, stem: Path) -> None:
    summary = summarise(runs)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "ceiling": best, "summary": summary, "runs": runs}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(summary, best, meta))


def ceiling(dataset, split: str) -> dict:
    """The metrics of a perfect ranking (relevant items first): the most any model can score overall."""
    relevant = dataset.relevant_items(split)
    perfect = {q: sorted(items, key=items.get, reverse=True) for q, items in relevant.items()}
    return {"overall": retrieval_metrics(perfect, relevant)}


def look_slices(dataset, split: str) -> dict[str, dict]:
    """For test queries naming a colour or pattern: their relevant items, split by whether the title states the look."""
    import pandas as pd

    queries = dataset.queries.set_index("query_id")
    states_look = dict(zip(dataset.items["item_id"], dataset.items["title_states_look"]))
    slices = {}
    for name, stated in SLICES.items():
        slices[name] = {
            q: subset
            for q, items in dataset.relevant_items(split).items()
            if pd.notna(queries.at[q, "colour"]) or pd.notna(queries.at[q, "pattern"])
            for subset in [{item: label for item, label in items.items() if states_look[item] == stated}]
            if subset
        }
    return slices


def retrieval_metrics(rankings, relevant) -> dict:
    from smar.metrics import retrieval_metrics as metrics

    return metrics(rankings, relevant, ks=(10, 50))


def slice_metrics(dataset, paths, split: str) -> dict:
    """Metrics of the look-naming test queries against the relevant items of each slice."""
    import pandas as pd

    per_query = pd.read_parquet(paths.evaluation_dir / "per_query.parquet")
    rankings = {q: list(r) for q, r in zip(per_query["query_id"], per_query["ranking"])}
    return {name: retrieval_metrics(rankings, relevant) | {"queries": len(relevant)} for name, relevant in look_slices(dataset, split).items()}


def summarise(runs: list[dict]) -> dict:
    summary = {}
    for label in dict.fromkeys(run["label"] for run in runs):
        mine = [run for run in runs if run["label"] == label]
        summary[label] = {
            section: {
                metric: {"mean": statistics.mean(r[section][metric] for r in mine), "std": statistics.pstdev(r[section][metric] for r in mine)}
                for metric in METRICS
            }
            for section in ["overall", *SLICES]
        }
        summary[label]["train_seconds"] = statistics.median(r["train_seconds"] for r in mine)
    return summary


def markdown(summary: dict, best: dict, meta: dict) -> str:
    def cell(stats: dict) -> str:
        return f"{stats['mean']:.4f} ± {stats['std']:.4f}"

    params = ", ".join(f"`{path}`" for path in meta["params"])
    epochs = f" (train.epochs set to {meta['epochs']})" if meta.get("epochs") else ""
    lines = [
        f"Quality on `{meta['data']}` ({meta['split']} split) with {params}{epochs}, mean ± std over seeds {meta['seeds']}.",
        "",
        "| model | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for kind, stats in summary.items():
        lines.append(f"| {kind} | " + " | ".join(cell(stats["overall"][m]) for m in METRICS) + " |")
    lines.append("| *perfect ranking (ceiling)* | " + " | ".join(f"{best['overall'][m]:.4f}" for m in METRICS) + " |")
    for name in SLICES:
        lines += ["", f"Queries naming a colour or pattern, scored on relevant items with the **{name}**:", ""]
        lines += ["| model | recall@10 | recall@50 | mrr@10 | ndcg@10 |", "|---|---|---|---|---|"]
        for kind, stats in summary.items():
            lines.append(f"| {kind} | " + " | ".join(cell(stats[name][m]) for m in ("recall@10", "recall@50", "mrr@10", "ndcg@10")) + " |")
    for label in summary:
        kind, _, params = label.partition(" · ")
        text_label = " · ".join(filter(None, ["text_only", params]))
        if kind == "smar" and text_label in summary:
            smar, text = summary[label]["overall"]["recall@50"]["mean"], summary[text_label]["overall"]["recall@50"]["mean"]
            lines += ["", f"{label} vs {text_label}, Recall@50: {smar:.4f} vs {text:.4f} ({100 * (smar / text - 1):+.1f}% relative; the paper: +7.6%)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
