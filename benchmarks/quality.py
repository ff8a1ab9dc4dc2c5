"""Quality benchmark: model kinds x seeds on one dataset, through the pipeline's own steps,
beside off-the-shelf MiniLM title search (zero-shot, no training), on every slice of queries.

    .venv/bin/python benchmarks/quality.py --split-by category      # cold start: test queries about unseen categories
    .venv/bin/python benchmarks/quality.py --split-by query         # new queries about products seen in training
    .venv/bin/python benchmarks/quality.py --kinds smar text_only --seeds 0
    .venv/bin/python benchmarks/quality.py --params params.yaml benchmarks/params.routing.yaml --kinds smar  # settings
    side by side

`--split-by` splits the dataset's queries again (smar.data.splits: `query`, or an item column whose
groups go whole to one split) into a scratch copy; without it the dataset's own split is used.
Writes benchmarks/results/NAME.json (every run, and mean/std per model) and NAME.md. The slices:
- overall, and cold: queries none of whose relevant items was relevant to a training query;
- by what the query names (when queries.parquet says): a brand, a colour or pattern, a
  material, or only a category;
- queries naming a colour or pattern, scored on their relevant items whose title states the
  look ("look in title") and on those whose title does not ("look only in image").
With several --params files every kind runs with each, and rows are labelled "kind · file name".
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ["smar_fused_only", "smar", "text_only", "image_only", "late_fusion", "smar_no_xattn"]
SMAR_KINDS = ("smar_fused_only", "smar")  # each measured against zero-shot and the kinds below it
METRICS = ["recall_at_10", "recall_at_50", "precision_at_50", "f1_at_50", "mrr_at_10", "ndcg_at_10", "bndcg_at_10"]
SLICE_METRICS = ["recall_at_10", "ndcg_at_10", "bndcg_at_10"]
ZERO_SHOT = "zero-shot MiniLM (no training)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--kinds", nargs="+", default=["smar_fused_only", "smar", "text_only", "late_fusion"], choices=KINDS
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--params", nargs="+", type=Path, default=[ROOT / "params.yaml"])
    parser.add_argument("--epochs", type=int, help="Override train.epochs in every params file.")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--split-by", help="Split the queries again: query, or an item column (category, family, ...).")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", help="Results file names: NAME.json and NAME.md (default: quality-<split-by>).")
    parser.add_argument("--report-only", action="store_true", help="Re-render NAME.md from the runs in NAME.json.")
    args = parser.parse_args()
    stem = args.results / (args.name or f"quality-{args.split_by or 'as-given'}")
    if args.report_only:
        stored = json.loads(stem.with_suffix(".json").read_text())
        write_report(stored["runs"], stored["baselines"], stored["meta"], stem)
        return print(stem.with_suffix(".md").read_text())

    scratch = Path(tempfile.mkdtemp(prefix="smar-quality-"))

    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # gigabytes of models and caches
    import logging

    from smar.core.process import setup

    setup()
    for noisy in ("mlflow", "smar.features.step", "smar.data.image_cache"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from smar.core.config import load_config
    from smar.core.paths import Paths
    from smar.data.dataset import load_dataset
    from smar.data.splits import resplit
    from smar.evaluation.slices import query_slices
    from smar.model.kinds import served_views
    from smar.pipeline import steps

    bases = {path: load_config(path) for path in args.params}
    if args.epochs:
        bases = {
            path: base.model_copy(update={"train": base.train.model_copy(update={"epochs": args.epochs})})
            for path, base in bases.items()
        }
    first = next(iter(bases.values()))
    data = args.data
    if args.split_by:
        data = scratch / "data"
        resplit(args.data, data, args.split_by, first.data.seed, first.data.valid_fraction, first.data.test_fraction)
    split = first.evaluate.split
    dataset = load_dataset(data)
    slices = query_slices(dataset, split)
    meta = {
        "data": shown(args.data),
        "split_by": args.split_by or "as given",
        "params": [shown(path) for path in args.params],
        "epochs": args.epochs,
        "seeds": args.seeds,
        "split": split,
        "queries": {name: len(relevant) for name, relevant in slices.items()},
    }
    shared = scratch / "features"  # the frozen encoders' outputs, shared by every run
    validated = Paths(data, scratch / "validated")
    steps.validate(first, validated)
    baselines = {"ceiling": slice_scores(perfect_rankings(slices["overall"]), slices)}
    baselines[ZERO_SHOT] = slice_scores(
        zero_shot(first, Paths(data, scratch / "zero-shot"), validated, dataset, split, shared), slices
    )
    runs = []
    for kind, (params, base), seed in itertools.product(args.kinds, bases.items(), args.seeds):
        label = kind if len(bases) == 1 else f"{kind} · {params.name.removesuffix('.yaml')}"
        config = base.model_copy(
            update={
                "model": base.model.model_copy(update={"kind": kind}),
                "train": base.train.model_copy(update={"seed": seed}),
            }
        )
        paths = Paths(data, scratch / f"{label}-{seed}")
        prepare_outputs(paths, validated, shared)
        steps.featurize(config, paths)  # computed once, then reused: its outputs are outside the timing
        started = time.perf_counter()
        trained = steps.train(config, paths)
        steps.export(config, paths)
        steps.build_index(config, paths)
        evaluation = steps.evaluate(config, paths)
        runs.append(
            {
                "kind": kind,
                "label": label,
                "params": shown(params),
                "seed": seed,
                "seconds": round(time.perf_counter() - started, 1),
                "train_seconds": round(trained["seconds"], 1),
                "zero_shot_blend": trained["zero_shot_blend"],
                "overall": evaluation["model"],
                "served_by_index": evaluation["served_by_index"],
                "routed": len(served_views(config.model)) > 1,
                "slices": slice_scores(model_rankings(paths), slices),
            }
        )
        print(
            f"{label} seed {seed}: R@10 {evaluation['model']['recall_at_10']:.4f}, cold {runs[-1]['slices']['cold']}",
            flush=True,
        )
        write_report(runs, baselines, meta, stem)  # after every run: a long benchmark keeps what it has
    print(stem.with_suffix(".md").read_text())


def shown(path: Path) -> str:
    """A path as the results show it: relative to the project root when it lies inside."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def prepare_outputs(paths, validated, shared: Path) -> None:
    """A run's outputs directory: the validation report copied, the shared features linked."""
    paths.validation.root.mkdir(parents=True)
    paths.validation.report.write_bytes(validated.validation.report.read_bytes())
    shared.mkdir(exist_ok=True)
    paths.features.root.symlink_to(shared, target_is_directory=True)


def perfect_rankings(relevant: dict) -> dict:
    return {q: sorted(items, key=items.get, reverse=True) for q, items in relevant.items()}


def zero_shot(config, paths, validated, dataset, split: str, shared: Path) -> dict:
    from smar.evaluation.evaluate import zero_shot_rankings
    from smar.pipeline import steps

    prepare_outputs(paths, validated, shared)
    steps.featurize(config, paths)
    return zero_shot_rankings(config, paths, dataset.items, dataset.split_queries(split), 50)


def model_rankings(paths) -> dict:
    import pandas as pd

    per_query = pd.read_parquet(paths.evaluation.per_query)
    return {q: list(r) for q, r in zip(per_query["query_id"], per_query["ranking"])}


def slice_scores(rankings: dict, slices: dict) -> dict:
    from smar.core.metrics import retrieval_metrics

    return {name: retrieval_metrics(rankings, relevant, ks=(10, 50)) for name, relevant in slices.items()}


def write_report(runs: list[dict], baselines: dict, meta: dict, stem: Path) -> None:
    summary = summarise(runs)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "baselines": baselines, "summary": summary, "runs": runs}, indent=2) + "\n"
    )
    stem.with_suffix(".md").write_text(markdown(summary, baselines, meta))


def _stats(values) -> dict:
    values = list(values)
    return {"mean": statistics.mean(values), "std": statistics.pstdev(values)}


def summarise(runs: list[dict]) -> dict:
    summary = {}
    for label in dict.fromkeys(run["label"] for run in runs):
        mine = [run for run in runs if run["label"] == label]
        summary[label] = {
            "overall": {metric: _stats(r["overall"][metric] for r in mine) for metric in METRICS},
            "slices": {
                name: {m: _stats(r["slices"][name][m] for r in mine) for m in SLICE_METRICS}
                for name in mine[0]["slices"]
            },
            "train_seconds": statistics.median(r["train_seconds"] for r in mine),
            "zero_shot_blend": [r.get("zero_shot_blend", 1.0) for r in mine],
            "seeds": len(mine),
        }
        if mine[0].get("routed"):
            summary[label]["routed_to_text"] = [
                round(r["served_by_index"].get("text", 0) / sum(r["served_by_index"].values()), 4) for r in mine
            ]
    return summary


def markdown(summary: dict, baselines: dict, meta: dict) -> str:
    def cell(stats: dict) -> str:
        return f"{stats['mean']:.4f} ± {stats['std']:.4f}"

    params = ", ".join(f"`{path}`" for path in meta["params"])
    epochs = f" (train.epochs set to {meta['epochs']})" if meta.get("epochs") else ""
    lines = [
        f"Quality on `{meta['data']}` split by **{meta['split_by']}** ({meta['split']} split, "
        f"{meta['queries']['overall']} queries, "
        f"{meta['queries'].get('cold', 0)} of them cold) with {params}{epochs}; mean ± std over seeds {meta['seeds']}.",
        "",
        "| model | " + " | ".join(METRICS) + " | train s |",
        "|---|" + "---|" * (len(METRICS) + 1),
    ]
    for label, stats in summary.items():
        lines.append(
            f"| {label} | "
            + " | ".join(cell(stats["overall"][m]) for m in METRICS)
            + f" | {stats['train_seconds']:.0f} |"
        )
    for name in (ZERO_SHOT, "ceiling"):
        shown = {"ceiling": "*perfect ranking (ceiling)*"}.get(name, f"*{name}*")
        lines.append(f"| {shown} | " + " | ".join(f"{baselines[name]['overall'][m]:.4f}" for m in METRICS) + " | |")
    names = list(baselines["ceiling"])
    lines += ["", "Recall@10 by slice (queries per slice in brackets):", ""]
    lines += [
        "| model | " + " | ".join(f"{name} ({meta['queries'][name]})" for name in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label, stats in summary.items():
        lines.append(f"| {label} | " + " | ".join(cell(stats["slices"][name]["recall_at_10"]) for name in names) + " |")
    lines.append(
        f"| *{ZERO_SHOT}* | " + " | ".join(f"{baselines[ZERO_SHOT][name]['recall_at_10']:.4f}" for name in names) + " |"
    )
    routed = {label: stats["routed_to_text"] for label, stats in summary.items() if "routed_to_text" in stats}
    if routed:
        lines += [
            "",
            "Share of test queries the routing head sent to the text index, per seed: "
            + "; ".join(f"{label}: {shares}" for label, shares in routed.items())
            + ".",
        ]
    blends = {label: stats["zero_shot_blend"] for label, stats in summary.items()}
    if any(factor != 1.0 for factors in blends.values() for factor in factors):
        lines += [
            "",
            "Zero-shot blend kept per seed (`train.zero_shot_blend`; 1: the model as trained): "
            + "; ".join(f"{label}: {factors}" for label, factors in blends.items())
            + ".",
        ]
    lines += ["", *target_lines(summary, baselines)]
    return "\n".join(lines) + "\n"


def target_lines(summary: dict, baselines: dict) -> list[str]:
    """Where SMAR (with and without L_t, L_i) stands against zero-shot MiniLM and the others, slice by slice."""
    zero = baselines[ZERO_SHOT]
    lines = []
    for label, stats in summary.items():
        kind, _, params = label.partition(" · ")
        if kind not in SMAR_KINDS:
            continue
        recall = {name: stats["slices"][name]["recall_at_10"]["mean"] for name in stats["slices"]}
        if "cold" in recall:
            lines.append(
                f"- {label}, cold Recall@10: {recall['cold']:.4f} = "
                f"{recall['cold'] / zero['cold']['recall_at_10']:.2f} x zero-shot MiniLM "
                f"({zero['cold']['recall_at_10']:.4f})."
            )
        worse = [name for name in recall if recall[name] < zero[name]["recall_at_10"]]
        lines.append(f"- {label}, slices below zero-shot MiniLM: {', '.join(worse) or 'none'}.")
        for other in KINDS[KINDS.index(kind) + 1 :]:
            other_label = " · ".join(filter(None, [other, params]))
            if other_label in summary:
                ours = {name: stats["slices"][name]["recall_at_10"] for name in recall}
                theirs = {name: summary[other_label]["slices"][name]["recall_at_10"] for name in recall}
                behind = [
                    f"{name} ({recall[name]:.4f} vs {theirs[name]['mean']:.4f}"
                    + (", within the spread)" if gap <= ours[name]["std"] + theirs[name]["std"] else ")")
                    for name in recall
                    if (gap := theirs[name]["mean"] - recall[name]) > 0
                ]
                lines.append(f"- {label} vs {other_label}: behind on {', '.join(behind) or 'no slice'}.")
    return lines


if __name__ == "__main__":
    main()
