"""The evaluation as people and trackers read it: tables with a verdict line, tracked metric names, the recall curve."""

from __future__ import annotations

from pathlib import Path

from smar.core.metrics import Metric


def tracked_metrics(result: dict) -> dict[str, float]:
    """The evaluation as MLflow metrics, each metric's key under what it measures: test.recall_at_10,
    test.zero_shot.recall_at_10, test.cold.recall_at_10, test.cold.zero_shot.recall_at_10, ...,
    test.cold.queries and test.index.recall_at_10 (the index against exact search)."""
    split = result["split"]
    tracked = {f"{split}.cold.queries": result["cold"]["queries"]}
    for key, value in result.get("index", {}).items():
        if key != "factory":
            tracked[Metric.parse(key).tracked(split, "index")] = value
    for scope, section in (((split,), result), ((split, "cold"), result["cold"])):
        for ranker in ("model", "zero_shot"):
            where = scope if ranker == "model" else (*scope, ranker)
            for key, value in section.get(ranker, {}).items():
                tracked[Metric.parse(key).tracked(*where)] = value
    return tracked


def plot_recall_curve(curve, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5), dpi=120)
    axes.plot(curve["k"], curve["model"], marker="o", label="model")
    if "zero_shot" in curve:
        axes.plot(curve["k"], curve["zero_shot"], marker=".", label="zero-shot MiniLM")
    axes.plot(curve["k"], curve["random"], linestyle="--", label="random ranking")
    axes.set(xlabel="K", ylabel="Recall@K", ylim=(0, 1), title="Recall@K on held-out queries")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


RANKERS = {"model": "model", "zero_shot": "zero-shot", "random": "random"}


def format_table(result: dict) -> str:
    """The evaluation tables: one row per metric, the model beside zero-shot MiniLM and a random
    ranking; over every query, then over the cold ones."""
    lines = [_table(result)]
    cold = result["cold"]
    if cold["queries"] == result["queries"]:
        lines += ["", f"Cold: all {cold['queries']} queries are about items no training query touched."]
    elif cold["queries"]:
        lines += [
            "",
            f"Cold: {cold['queries']} of {result['queries']} queries about items no training query touched:",
            _table(cold),
        ]
    else:
        lines += ["", "Cold: no query is about items that training never saw (split_by groups of items to measure it)."]
    if "zero_shot" in result:
        lines.append(_against_zero_shot(result))
    return "\n".join(lines)


def _against_zero_shot(result: dict) -> str:
    """One line on the primary metric: did training help, over every query and over the cold ones?"""
    primary = Metric.parse(result["primary_metric"])

    def compared(section: dict) -> str:
        model, zero = section["model"][primary.key], section["zero_shot"][primary.key]
        return f"{model:.4f} vs {zero:.4f} ({model / zero:.2f}x)" if zero else f"{model:.4f} vs {zero:.4f}"

    line = f"{primary.label} against zero-shot MiniLM (no training): {compared(result)} over all queries"
    if result["cold"]["queries"]:
        line += f", {compared(result['cold'])} on the cold ones"
    return line + "."


def _table(section: dict) -> str:
    shown = [ranker for ranker in RANKERS if ranker in section]
    lines = [f"{'metric':<14}" + "".join(f"{RANKERS[r]:>11}" for r in shown), "-" * (14 + 11 * len(shown))]
    for key in section["model"]:
        lines.append(f"{Metric.parse(key).label:<14}" + "".join(f"{section[r][key]:>11.4f}" for r in shown))
    return "\n".join(lines)
