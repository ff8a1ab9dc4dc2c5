"""The evaluation as people and trackers read it: tables with a verdict line, tracked metric names, the recall curve."""

from __future__ import annotations

from pathlib import Path


def tracked_metrics(result: dict) -> dict[str, float]:
    """The evaluation as MLflow metrics: test_recall_at_10, test_zero_shot_recall_at_10,
    test_cold_recall_at_10, test_cold_zero_shot_recall_at_10, ... and test_cold_queries."""
    split, tracked = result["split"], {f"{result['split']}_cold_queries": result["cold"]["queries"]}
    for scope, section in (("", result), ("cold_", result["cold"])):
        for ranker, prefix in (("model", ""), ("zero_shot", "zero_shot_")):
            for name, value in section.get(ranker, {}).items():
                tracked[f"{split}_{scope}{prefix}{_metric_key(name)}"] = value
    return tracked


def _metric_key(name: str) -> str:
    return name.replace("@", "_at_")


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
    """One line: did training help, over every query and over the cold ones?"""

    def compared(section: dict) -> str:
        model, zero = section["model"]["recall@10"], section["zero_shot"]["recall@10"]
        return f"{model:.4f} vs {zero:.4f} ({model / zero:.2f}x)" if zero else f"{model:.4f} vs {zero:.4f}"

    line = f"Recall@10 against zero-shot MiniLM (no training): {compared(result)} over all queries"
    if result["cold"]["queries"]:
        line += f", {compared(result['cold'])} on the cold ones"
    return line + "."


def _table(section: dict) -> str:
    shown = [ranker for ranker in RANKERS if ranker in section]
    lines = [f"{'metric':<14}" + "".join(f"{RANKERS[r]:>11}" for r in shown), "-" * (14 + 11 * len(shown))]
    for name in section["model"]:
        lines.append(f"{name:<14}" + "".join(f"{section[r][name]:>11.4f}" for r in shown))
    return "\n".join(lines)
