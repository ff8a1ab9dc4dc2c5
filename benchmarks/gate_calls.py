"""The statistical gate's calls: versions of the same settings that differ only by their seed,
and one made worse on purpose, judged by the gate the register step runs.

    .venv/bin/python benchmarks/gate_calls.py                   # seeds 0-10: 10 pairs, and half the epochs
    .venv/bin/python benchmarks/gate_calls.py --seeds 0 1 2 --worse-epochs 2

Every version is trained with the shipped params (one catalog's features, made once), exported
and indexed; each ranks the evaluation queries through its index as served. Seed s+1 is then
judged as the candidate against seed s as the champion (smar.registry.gate: the paired bootstrap
of per-query differences, overall and per slice, at register.tolerance and register.confidence),
and the version trained with `--worse-epochs` against seed 0. A seed pair has no true
difference, so "rejected" is a wrong call, and so is "promoted" when the candidate is in fact
worse by more than the tolerance; "not distinguishable" and "promoted" are the right ones. The
version made worse must be rejected.
Writes benchmarks/results/gate-calls.{json,md}.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(11)))
    parser.add_argument("--worse-epochs", type=int, help="Epochs of the version made worse (default: half).")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    from smar.core.process import setup

    setup()
    from learning_loop import shipped  # the shipped steps, untracked, reusing one catalog's features

    from smar.core.config import load_config
    from smar.core.paths import Paths
    from smar.data.dataset import load_dataset
    from smar.evaluation.slices import query_slices

    base = load_config(args.params)
    settings, split, metric = base.register_, base.evaluate.split, base.evaluate.primary
    dataset = load_dataset(args.data)
    queries = dataset.split_queries(split)
    relevant, slices = dataset.relevant_items(split), query_slices(dataset, split)
    texts = dict(zip(queries["query_id"], queries["text"]))
    scratch = Path(tempfile.mkdtemp(prefix="smar-gate-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    features = scratch / f"seed-{args.seeds[0]}" / "features"  # one catalog: featurized once, then linked
    worse_epochs = args.worse_epochs or max(1, base.train.epochs // 2)

    def version(name: str, **train):
        config = base.model_copy(update={"train": base.train.model_copy(update=train)})
        paths = Paths(args.data, scratch / name)
        shipped(config, paths, features)
        print(f"trained {name}", flush=True)
        return measured(paths, queries, metric.k)

    def judged(candidate, champion) -> dict:
        from smar.registry.gate import compare_on_unseen, promotion_decision

        comparison = compare_on_unseen(candidate, champion, relevant, metric, texts, slices, settings.confidence)
        decision = promotion_decision(comparison, settings.threshold, settings.tolerance, settings.min_gate_queries)
        return {
            "verdict": decision.verdict,
            "candidate": round(comparison.candidate, 4),
            "champion": round(comparison.champion, 4),
            "difference": asdict(comparison.difference),
            "slices": {name: asdict(interval) for name, interval in comparison.slices.items()},
            "reason": decision.reason,
        }

    versions = {seed: version(f"seed-{seed}", seed=seed) for seed in args.seeds}
    pairs = []
    for champion_seed, candidate_seed in zip(args.seeds, args.seeds[1:]):
        call = judged(versions[candidate_seed], versions[champion_seed])
        worse_beyond = call["difference"]["mean"] < -settings.tolerance
        call |= {"champion_seed": champion_seed, "candidate_seed": candidate_seed}
        call["correct"] = call["verdict"] == "not distinguishable" or (
            call["verdict"] == "promoted" and not worse_beyond
        )
        pairs.append(call)
        print(json.dumps({k: v for k, v in call.items() if k != "slices"}), flush=True)
    worse = judged(version(f"epochs-{worse_epochs}", seed=args.seeds[0], epochs=worse_epochs), versions[args.seeds[0]])
    worse |= {"epochs": worse_epochs, "champion_seed": args.seeds[0], "correct": worse["verdict"] == "rejected"}
    print(json.dumps({k: v for k, v in worse.items() if k != "slices"}), flush=True)
    write(
        {
            "data": str(args.data),
            "split": split,
            "metric": metric.key,
            "tolerance": settings.tolerance,
            "confidence": settings.confidence,
            "epochs": base.train.epochs,
            "pairs": pairs,
            "made_worse": worse,
        },
        args.results,
    )


def measured(paths, queries, k: int):
    """The version at `paths` as the gate sees one: its rankings through its index, its training queries."""
    from smar.evaluation.evaluate import rank
    from smar.model.checkpoint import trained_queries
    from smar.registry.gate import Measured
    from smar.retrieval.retriever import Retriever
    from smar.traffic.dataset import normalise

    retriever = Retriever(paths.model.root, paths.index.root)
    ids, texts = trained_queries(paths.model.root)
    rankings = rank(lambda batch, depth: retriever.search(batch, depth).item_ids, queries, k)
    return Measured(rankings, ids, frozenset(map(normalise, texts or ())))


def write(result: dict, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "gate-calls.json").write_text(json.dumps(result, indent=2) + "\n")

    def interval(value: dict) -> str:
        return f"{value['mean']:+.4f} [{value['low']:+.4f}, {value['high']:+.4f}]"

    pairs, worse = result["pairs"], result["made_worse"]
    lines = [
        f"# The gate's calls on `{Path(result['data']).name}` ({result['split']}, {result['metric']}, tolerance "
        f"{result['tolerance']}, {result['confidence']:.0%} paired bootstrap)",
        "",
        "`.venv/bin/python benchmarks/gate_calls.py`: versions of the shipped settings "
        f"({result['epochs']} epochs) that differ by their seed, each judged against the one before, and one "
        f"trained {worse['epochs']} epochs judged against seed {worse['champion_seed']}.",
        "",
        "| champion | candidate | champion's | candidate's | candidate - champion | worst slice | decision | right |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def row(champion: str, candidate: str, call: dict) -> str:
        name, low = min(
            ((n, s) for n, s in call["slices"].items()), key=lambda pair: pair[1]["high"], default=("", None)
        )
        worst = f"{name} {interval(low)} ({low['queries']})" if low else ""
        return (
            f"| {champion} | {candidate} | {call['champion']:.4f} | {call['candidate']:.4f} | "
            f"{interval(call['difference'])} ({call['difference']['queries']}) | {worst} | {call['verdict']} | "
            f"{'yes' if call['correct'] else '**no**'} |"
        )

    lines += [row(f"seed {p['champion_seed']}", f"seed {p['candidate_seed']}", p) for p in pairs]
    lines.append(row(f"seed {worse['champion_seed']}", f"{worse['epochs']} epochs", worse))
    counts = {
        verdict: sum(p["verdict"] == verdict for p in pairs)
        for verdict in ("promoted", "not distinguishable", "rejected")
    }
    lines += [
        "",
        f"Seed pairs: {', '.join(f'{n} {v}' for v, n in counts.items())}; right calls "
        f"{sum(p['correct'] for p in pairs)} of {len(pairs)}. Made worse: {worse['verdict']}.",
        "",
    ]
    (results / "gate-calls.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
