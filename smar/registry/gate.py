"""The promotion gate: a candidate takes `champion` only if its score on `evaluate.primary_metric`
(Recall@10 by default) passes `register.threshold` and is not worse (beyond `tolerance`) than the
champion's, both measured on the same queries: the evaluation queries that NEITHER version
trained on.

Each saved model records the ids and the texts of the queries it trained on
(smar.model.checkpoint), so a champion trained on a different split of the same catalog (one
whose training queries are now test queries) is never measured on queries it has seen, nor
on a query it saw under another id (a dataset built from the search log names its queries by
their normalised text). With fewer than
`register.min_gate_queries` such queries the gate refuses to decide, and the candidate stays
challenger. A champion saved before the record existed is compared on every evaluation query,
and the reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from smar.core.errors import SmarError
from smar.core.metrics import Metric, mean_score


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class Measured:
    """A version's rankings of the evaluation queries (as deep as the metric's k), and the queries it trained on."""

    rankings: dict[str, list[str]]
    trained: frozenset[str] | None  # the ids of its training queries; None: the version records none
    trained_texts: frozenset[str] = frozenset()  # their texts, normalised (smar.traffic.dataset.normalise)


@dataclass(frozen=True)
class Comparison:
    """The candidate's and the champion's score (None: no champion) on the same queries."""

    metric: Metric  # evaluate.primary_metric
    candidate: float | None  # None: no query is left to measure it on
    champion: float | None
    queries: int  # evaluation queries neither version trained on: what the numbers cover
    left_out: int  # evaluation queries one of them trained on
    note: str = ""


def compare_on_unseen(
    candidate: Measured,
    champion: Measured | None,
    relevant: dict[str, dict[str, int]],
    metric: Metric,
    texts: dict[str, str] | None = None,
) -> Comparison:
    """Both versions' `metric` on the evaluation queries that neither trained on, by id or, with
    the evaluation queries' `texts`, by normalised text."""
    from smar.traffic.dataset import normalise

    versions = [candidate] if champion is None else [candidate, champion]
    seen = {query for version in versions for query in version.trained or ()}
    seen_texts = {text for version in versions for text in version.trained_texts}
    texts = texts or {}

    def unseen_query(query: str) -> bool:
        return query not in seen and (query not in texts or normalise(texts[query]) not in seen_texts)

    unseen = {query: items for query, items in relevant.items() if items and unseen_query(query)}
    note = (
        "the champion records no training queries, so it is measured on every evaluation query"
        if champion and champion.trained is None
        else ""
    )
    if not unseen:
        return Comparison(metric, None, None, 0, len(relevant), note)
    return Comparison(
        metric,
        mean_score(candidate.rankings, unseen, metric),
        mean_score(champion.rankings, unseen, metric) if champion else None,
        len(unseen),
        len(relevant) - len(unseen),
        note,
    )


def promotion_decision(
    comparison: Comparison, threshold: float, tolerance: float = 0.0, min_queries: int = 1
) -> Decision:
    """The gate: enough unseen queries, the candidate's score above the threshold, and not worse than the champion's."""
    candidate, champion, queries, label = (
        comparison.candidate,
        comparison.champion,
        comparison.queries,
        comparison.metric.label,
    )
    if queries < min_queries or candidate is None:
        return Decision(
            False,
            f"only {queries} evaluation queries are unseen by both the candidate and the champion; the gate needs "
            f"{min_queries} to decide",
        )
    if candidate < threshold:
        return Decision(False, f"{label} {candidate:.4f} is below the threshold {threshold:.4f}")
    if champion is None:
        return Decision(True, f"{label} {candidate:.4f} passes the threshold {threshold:.4f}; there is no champion yet")
    on = f" on the {queries} queries neither trained on"
    if candidate < champion - tolerance:
        return Decision(False, f"{label} {candidate:.4f} is worse than the champion's {champion:.4f}{on}")
    return Decision(
        True,
        f"{label} {candidate:.4f} passes the threshold {threshold:.4f} and matches or beats the champion's "
        f"{champion:.4f}{on}",
    )


def gate(
    client,
    model_name: str,
    version: str,
    compare,
    threshold: float,
    tolerance: float,
    min_queries: int = 1,
    attempts: int = 5,
):
    """Decide against the current champion and, on a pass, move the alias by compare-and-set.

    `compare(champion_version or None)` measures the candidate and that champion on the same
    queries (a `Comparison`). When another promotion moves the champion between the decision
    and the move, the candidate is judged again against the new champion. Returns (decision,
    champion version, comparison).
    """
    from smar.registry.promotion import ChampionMoved, current_champion, move_champion

    compared: dict[str | None, Comparison] = {}
    for _ in range(attempts):
        champion_version = current_champion(client, model_name)
        if champion_version == version:  # promoted already (a retried register, or by hand): nothing to move
            return Decision(True, f"version {version} is the champion already"), champion_version, compare(None)
        if champion_version not in compared:
            compared[champion_version] = compare(champion_version)
        comparison = compared[champion_version]
        decision = promotion_decision(comparison, threshold, tolerance, min_queries)
        if comparison.note:
            decision = Decision(decision.promote, f"{decision.reason} ({comparison.note})")
        if not decision.promote:
            return decision, champion_version, comparison
        try:
            move_champion(
                client,
                model_name,
                version,
                expected=champion_version,
                reason=decision.reason,
                by="gate",
                metrics={comparison.metric.key: round(comparison.candidate, 6)},
            )
            return decision, champion_version, comparison
        except ChampionMoved:
            continue
    raise SmarError(
        f"{model_name}: the champion moved {attempts} times while version {version} was judged; it was not promoted. "
        f"Run again."
    )
