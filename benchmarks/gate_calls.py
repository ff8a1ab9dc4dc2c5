"""The statistical gate's calls: versions of the same settings that differ only by their seed,
and one made worse on purpose, judged by the gate the register step runs.

    .venv/bin/python benchmarks/gate_calls.py                   # seeds 0-10: 10 pairs; half the epochs, and 1
    .venv/bin/python benchmarks/gate_calls.py --seeds 0 1 2 --worse-epochs 2
    .venv/bin/python benchmarks/gate_calls.py --worse-only      # the pairs kept from gate-calls.json

Every version is trained with the shipped params (one catalog's features, made once), exported
and indexed; each ranks the evaluation queries through its index as served. Seed s+1 is then
judged as the candidate against seed s as the champion (smar.registry.gate: the paired bootstrap
of per-query differences, overall and per slice, at register.tolerance and register.confidence),
and each version trained with fewer epochs (`--worse-epochs`) against the first seed. A seed
pair has no true difference, so "rejected" is a wrong call, and so is "promoted" when the
candidate is in fact worse by more than the tolerance; "not distinguishable" and "promoted" are
the right ones. A version made worse must be rejected ("not distinguishable" keeps the
champion too, but is not the refusal asked for).
Training is deterministic given the seed, so `--worse-only` retrains only the first seed and the
worse versions and keeps the pairs of the last full run.
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
    parser.add_argument("--worse-epochs", type=int, nargs="+", help="Epochs of the versions made worse (half, 1).")
    parser.add_argument("--worse-only", action="store_true", help="keep the pairs of the last gate-calls.json")
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
    worse_epochs = args.worse_epochs or sorted({max(1, base.train.epochs // 2), 1}, reverse=True)

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

    seeds = args.seeds[:1] if args.worse_only else args.seeds
    versions = {seed: version(f"seed-{seed}", seed=seed) for seed in seeds}
    pairs = json.loads((args.results / "gate-calls.json").read_text())["pairs"] if args.worse_only else []
    for champion_seed, candidate_seed in zip(seeds, seeds[1:]):
        call = judged(versions[candidate_seed], versions[champion_seed])
        worse_beyond = call["difference"]["mean"] < -settings.tolerance
        call |= {"champion_seed": champion_seed, "candidate_seed": candidate_seed}
        call["correct"] = call["verdict"] == "not distinguishable" or (
            call["verdict"] == "promoted" and not worse_beyond
        )
        pairs.append(call)
        print(json.dumps({k: v for k, v in call.items() if k != "slices"}), flush=True)
    worse = []
    for epochs in worse_epochs:
        call = judged(version(f"epochs-{epochs}", seed=seeds[0], epochs=epochs), versions[seeds[0]])
        call |= {"epochs": epochs, "champion_seed": seeds[0], "correct": call["verdict"] == "rejected"}
        worse.append(call)
        print(json.dumps({k: v for k, v in call.items() if k != "slices"}), flush=True)
    write(
        {
            "kind": base.model.kind,
            "image_stage": base.model.image_stage,
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
    shown = ", ".join(str(call["epochs"]) for call in worse)
    lines = [
        f"# The gate's calls on `{Path(result['data']).name}` ({result['split']}, {result['metric']}, tolerance "
        f"{result['tolerance']}, {result['confidence']:.0%} paired bootstrap)",
        "",
        "`.venv/bin/python benchmarks/gate_calls.py`: versions of the shipped settings "
        f"(kind `{result['kind']}`, image stage {result['image_stage']}, {result['epochs']} epochs) "
        "that differ by their seed, each judged against the one before, and one "
        f"trained {shown} epochs judged against seed {worse[0]['champion_seed']}.",
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
    lines += [row(f"seed {call['champion_seed']}", epochs(call["epochs"]), call) for call in worse]
    counts = {
        verdict: sum(p["verdict"] == verdict for p in pairs)
        for verdict in ("promoted", "not distinguishable", "rejected")
    }
    lines += [
        "",
        f"Seed pairs: {', '.join(f'{n} {v}' for v, n in counts.items())}; right calls "
        f"{sum(p['correct'] for p in pairs)} of {len(pairs)}. Made worse: "
        + ", ".join(f"{epochs(call['epochs'])} {call['verdict']}" for call in worse)
        + ".",
        "",
    ]
    (results / "gate-calls.md").write_text("\n".join(lines))


def epochs(count: int) -> str:
    return f"{count} epoch{'' if count == 1 else 's'}"


if __name__ == "__main__":
    main()
