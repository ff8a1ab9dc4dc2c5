"""Interleaving on the default catalog: how many searches the experiment needs to find the better
of two versions, and how rarely it names a winner where there is none.

    .venv/bin/python benchmarks/interleaving.py                 # 2 versions trained, 20 trials an experiment
    .venv/bin/python benchmarks/interleaving.py --trials 5 --worse-epochs 2

Two versions of the shipped settings: one trained the params' epochs, one `--worse-epochs`.
Their true Recall@10 is measured on the queries the simulated shoppers search (the train and
valid splits, against the dataset's qrels), from their rankings through their own indexes. A
third, "blended", answers a share of those queries (a fixed random subset) with the weaker
version's ranking and the rest with the better's, the share chosen so that it is worse by
exactly `--difference` (0.03): the smallest difference the experiment is asked to find.

A trial is one experiment as `smar serve` and the `smar-promote` flow run it, searches in one
process instead of over HTTP: the searches drawn as `smar simulate` draws them (sessions, bots,
and the position-based click model of smar.traffic.shoppers, every draw from the trial's seed),
each search team-drafted (smar.traffic.interleaving) from the two sides' top 10, credited by
the shopper's events, and decided at the fixed looks of smar.registry.on_traffic.look with
register.interleaving_searches and register.interleaving_confidence. Experiments (champion / challenger):
the better against the blended and the blended against the better (a true difference of
`--difference`), the better against the weaker and back, and A/A (the better on both sides).
Each runs `--trials` times with seeds 0, 1, ... The serving path of the same code (the server's
draws, the search log, the flow) is tested end to end in tests/serving/test_service.py.
Writes benchmarks/results/interleaving.{json,md}.
"""

from __future__ import annotations

import argparse
import atexit
import json
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

K = 10  # results a search shows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--worse-epochs", type=int, default=1)
    parser.add_argument("--difference", type=float, default=0.03, help="true Recall@10 difference of the blend")
    parser.add_argument("--aa-trials", type=int, default=200, help="A/A trials for its rate of false winners")
    parser.add_argument(
        "--rankings",
        type=Path,
        default=ROOT / "outputs" / "benchmarks" / "interleaving-rankings.json",
        help="the two versions' rankings: made (trained) when missing, read when present",
    )
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    from smar.core.process import setup

    setup()
    import pandas as pd
    from learning_loop import shipped  # the shipped steps, untracked, reusing one catalog's features

    from smar.core.config import load_config
    from smar.core.contract import QRELS, QUERIES
    from smar.core.intervals import wilson
    from smar.core.paths import Paths
    from smar.evaluation.evaluate import rank
    from smar.retrieval.retriever import Retriever

    config = load_config(args.params)
    settings = config.register_
    qrels = pd.read_parquet(args.data / QRELS)
    relevant = qrels.groupby("query_id")["item_id"].agg(set).to_dict()
    searched = sorted(qrels.loc[qrels["split"].isin(("train", "valid")), "query_id"].unique())  # as simulate's
    queries = pd.read_parquet(args.data / QUERIES).set_index("query_id").loc[searched].reset_index()
    scratch = Path(tempfile.mkdtemp(prefix="smar-interleaving-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)

    def version(name: str, epochs: int) -> dict[str, list[str]]:
        train = config.train.model_copy(update={"epochs": epochs})
        paths = Paths(args.data, scratch / name)
        shipped(config.model_copy(update={"train": train}), paths, scratch / "better" / "features")
        retriever = Retriever(paths.model.root, paths.index.root)
        print(f"trained {name} ({epochs} epochs)", flush=True)
        return rank(lambda batch, depth: retriever.search(batch, depth).item_ids, queries, K)

    made = {"epochs": [config.train.epochs, args.worse_epochs], "data": str(args.data.resolve())}
    kept = json.loads(args.rankings.read_text()) if args.rankings.is_file() else {}
    if kept.get("made") != made:  # trained with other settings, or not yet
        kept = {"made": made, "better": version("better", config.train.epochs)}
        kept["weaker"] = version("weaker", args.worse_epochs)
        args.rankings.parent.mkdir(parents=True, exist_ok=True)
        args.rankings.write_text(json.dumps(kept))
    better, weaker = kept["better"], kept["weaker"]
    blended = blend(better, weaker, relevant, searched, args.difference)
    sides = {"better": better, "blended": blended, "weaker": weaker}
    true_recall = {name: recall(ranking, relevant, searched) for name, ranking in sides.items()}
    print(json.dumps({"true_recall_at_10": true_recall}), flush=True)

    experiments = []
    for champion, challenger in (
        ("better", "blended"),
        ("blended", "better"),
        ("better", "weaker"),
        ("weaker", "better"),
        ("better", "better"),
    ):
        trials = [
            trial(sides[champion], sides[challenger], searched, relevant, settings.interleaving_searches,
                  settings.interleaving_confidence, seed)
            for seed in range(args.trials)
        ]  # fmt: skip
        experiment = summarised(champion, challenger, true_recall, trials)
        print(json.dumps({k: v for k, v in experiment.items() if k != "trials"}), flush=True)
        experiments.append(experiment)
    print(f"A/A: {args.aa_trials} trials", flush=True)
    budget, confidence = settings.interleaving_searches, settings.interleaving_confidence
    aa = [trial(better, better, searched, relevant, budget, confidence, 1000 + seed) for seed in range(args.aa_trials)]
    winners = sum(t["decision"] != "not distinguishable" for t in aa)
    low, high = wilson(winners, args.aa_trials)
    won, lost = sum(t["won"] for t in aa), sum(t["lost"] for t in aa)
    result = {
        "aa_rate": {
            "trials": args.aa_trials,
            "winners": winners,
            "low": round(low, 4),
            "high": round(high, 4),
            "decided_searches": won + lost,
            "challenger_share": round(won / (won + lost), 4),  # 0.5: the draft favours neither side
        },
        "data": str(args.data),
        "queries": len(searched),
        "budget": settings.interleaving_searches,
        "confidence": settings.interleaving_confidence,
        "epochs": {"better": config.train.epochs, "weaker": args.worse_epochs},
        "true_recall_at_10": true_recall,
        "experiments": experiments,
    }
    write(result, args.results)


def recall(rankings: dict[str, list[str]], relevant: dict[str, set[str]], query_ids: list[str]) -> float:
    """Mean Recall@K over `query_ids` (each searched equally often, as the shoppers draw them)."""
    found = [len(set(rankings[q][:K]) & relevant[q]) / len(relevant[q]) for q in query_ids]
    return sum(found) / len(found)


def blend(better: dict, weaker: dict, relevant: dict, query_ids: list[str], difference: float) -> dict:
    """The better version's rankings, but the weaker's on queries taken in a fixed random order
    until the blend's Recall@K is `difference` below the better's (or every query is taken)."""
    order, taken, lost = list(query_ids), set(), 0.0
    random.Random(0).shuffle(order)
    for query in order:
        if lost >= difference:
            break
        taken.add(query)
        lost += (recall(better, relevant, [query]) - recall(weaker, relevant, [query])) / len(query_ids)
    return {q: (weaker if q in taken else better)[q] for q in query_ids}


def trial(champion: dict, challenger: dict, query_ids, relevant, budget: int, confidence: float, seed: int) -> dict:
    """One experiment: searches until the look that decides, or until the budget is spent."""
    from smar.registry.on_traffic import LOOKS, look
    from smar.traffic.interleaving import SIDES, credit, team_draft
    from smar.traffic.shoppers import Shoppers, plan_sessions, shopper_events

    shoppers = Shoppers()
    draft = random.Random(f"draft:{seed}")
    outcomes: list[str | None] = []
    decided = {"decision": "waiting"}
    for session in plan_sessions(query_ids, budget, shoppers, random.Random(seed)):
        for number, query, is_bot in session:
            shown, sides = team_draft(champion[query], challenger[query], K, draft)
            events = shopper_events(shown, relevant[query], is_bot, shoppers, random.Random(f"{seed}:{number}"))
            outcomes.append(credit(sides, [position for _, _, position in events]))
            if len(outcomes) % (budget // LOOKS) == 0:
                decided = look(outcomes, budget, confidence)
                if decided["decision"] != "waiting":
                    break
        if decided["decision"] != "waiting":
            break
    wins, losses = outcomes.count(SIDES[1]), outcomes.count(SIDES[0])
    return {"seed": seed, "decision": decided["decision"], "searches": len(outcomes), "won": wins, "lost": losses}


def summarised(champion: str, challenger: str, true_recall: dict, trials: list[dict]) -> dict:
    difference = true_recall[challenger] - true_recall[champion]
    right = "promoted" if difference > 0 else "rejected" if difference < 0 else None
    wrong = {"promoted": "rejected", "rejected": "promoted", None: None}[right]
    counts = {verdict: sum(t["decision"] == verdict for t in trials) for verdict in DECISIONS}
    found = [t["searches"] for t in trials if t["decision"] == right] if right else []
    return {
        "champion": champion,
        "challenger": challenger,
        "difference": round(difference, 4),
        "counts": counts,
        "right_calls": counts[right] if right else counts["not distinguishable"],
        "wrong_calls": counts[wrong] if wrong else counts["promoted"] + counts["rejected"],
        "searches_to_find": {
            "median": statistics.median(found) if found else None,
            "min": min(found, default=None),
            "max": max(found, default=None),
        },
        "trials": trials,
    }


DECISIONS = ("promoted", "rejected", "not distinguishable")


def write(result: dict, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "interleaving.json").write_text(json.dumps(result, indent=2) + "\n")
    recalls = ", ".join(f"{name} {value:.4f}" for name, value in result["true_recall_at_10"].items())
    lines = [
        f"# Interleaving on `{Path(result['data']).name}`: {result['budget']:,} searches an experiment at most, "
        f"looked at 4 times, {result['confidence']:.0%} in all (register.interleaving_confidence)",
        "",
        f"`.venv/bin/python benchmarks/interleaving.py`: the simulated shoppers on {result['queries']:,} queries "
        f"(train and valid); the better version trained {result['epochs']['better']} epochs, the weaker "
        f"{result['epochs']['weaker']}, the blended is the better with some queries answered by the weaker. True "
        f"Recall@10 on the searched queries: {recalls}.",
        "",
        "| champion | challenger | challenger - champion (true Recall@10) | trials | promoted | rejected | "
        "not distinguishable | wrong calls | searches to the right call: median [min, max] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in result["experiments"]:
        found = e["searches_to_find"]
        searches = f"{found['median']:,.0f} [{found['min']:,}, {found['max']:,}]" if found["median"] else "-"
        lines.append(
            f"| {e['champion']} | {e['challenger']} | {e['difference']:+.4f} | {len(e['trials'])} | "
            f"{e['counts']['promoted']} | {e['counts']['rejected']} | {e['counts']['not distinguishable']} | "
            f"{e['wrong_calls']} | {searches} |"
        )
    aa = result["aa_rate"]
    lines += [
        "",
        f"A/A over {aa['trials']} more trials (the better version on both sides): {aa['winners']} named a winner, "
        f"{aa['winners'] / aa['trials']:.1%} (95% Wilson interval [{aa['low']:.1%}, {aa['high']:.1%}]), against "
        f"the {1 - result['confidence']:.0%} the looks allow; of their {aa['decided_searches']:,} decided searches "
        f"the challenger's side won {aa['challenger_share']:.1%}.",
        "",
    ]
    (results / "interleaving.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
