"""What a pipeline run reports: the one-screen summary `smar pipeline` prints (and the flow keeps as artifacts)."""

from __future__ import annotations

from smar.core.metrics import Metric
from smar.evaluation.report import format_table
from smar.retrieval.index import EXACTNESS


def decision_row(registration: dict) -> dict:
    """The gate's decision as one table row (the flow's promotion artifact)."""
    label = Metric.parse(registration["metric"]).label

    def rounded(value):
        return round(value, 4) if value is not None else None

    return {
        "model": registration["model_name"],
        "version": registration["version"],
        "decision": verdict(registration),
        label: rounded(registration["score"]),
        "champion before": registration["champion_version"],
        f"champion {label}": rounded(registration["champion_score"]),
        "candidate - champion": _interval(registration.get("difference")),
        "queries": registration["gate_queries"],
        "reason": registration["reason"],
    }


def verdict(registration: dict) -> str:
    """promoted, rejected or not distinguishable (a registration.json from before the last has only `promote`)."""
    return registration.get("verdict") or ("promoted" if registration["promote"] else "rejected")


def _interval(interval: dict | None) -> str:
    if not interval:
        return ""
    return f"{interval['mean']:+.4f} [{interval['low']:+.4f}, {interval['high']:+.4f}]"


def format_summary(summary: dict) -> str:
    """The one-screen summary printed at the end of `smar pipeline` (and kept as a Prefect artifact)."""
    evaluation, registration = summary["evaluate"], summary["register"]
    decision = "PROMOTED to champion" if registration["promote"] else f"NOT promoted ({verdict(registration)})"
    slices = registration.get("slices") or {}
    return "\n".join(
        [
            "",
            f"smar pipeline  data={summary['data']}  outputs={summary['outputs']}",
            f"  validated   {summary['validate']['items']} items, {summary['validate']['queries']} queries, "
            f"{summary['validate']['qrels']} qrels",
            _featurized(summary["featurize"]),
            _towers(summary),
            f"  indexed     {summary['index']['items']} items x {', '.join(summary['index']['views'])} "
            f"({summary['index']['factory']}, dim {summary['index']['dim']};"
            f" {EXACTNESS.label} against exact search {evaluation['index'][EXACTNESS.key]:.4f})",
            "",
            f"Evaluation on {evaluation['queries']} {evaluation['split']} queries over {evaluation['items']} items"
            f" (served by index: "
            f"{', '.join(f'{view} {count}' for view, count in evaluation['served_by_index'].items())}):",
            format_table(evaluation),
            "",
            f"Model {registration['model_name']} version {registration['version']} (MLflow run "
            f"{registration['run_id']})",
            f"  {decision}: {registration['reason']}.",
        ]
        + (
            [
                f"  candidate - champion by slice ({next(iter(slices.values()))['confidence']:.0%}): "
                + "; ".join(
                    f"{name} {_interval(interval)} ({interval['queries']})" for name, interval in slices.items()
                )
            ]
            if slices
            else []
        )
    )


def _featurized(featurize: dict) -> str:
    return (
        f"  featurized  {featurize['shards']} shards ({featurize['computed']} computed, {featurize['reused']} reused) "
        f"in {featurize['seconds']:.0f} s, {featurize['item_bytes_per_item']:,.0f} bytes per item"
    )


def _towers(summary: dict) -> str:
    """Where the run's towers came from: its training, or the champion (a reindex)."""
    if "train" not in summary:
        champion = summary["champion"]
        return f"  towers      {champion['kind']} of champion version {champion['from_version']} (reindex: no training)"
    train = summary["train"]
    [(key, score)] = train["valid"].items()
    return (
        f"  trained     {train['kind']} in {train['seconds']:.0f} s, final loss {train['final_loss']:.3f}, valid "
        f"{Metric.parse(key).label} {score:.3f}"
    )
