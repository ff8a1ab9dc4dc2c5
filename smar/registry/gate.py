"""The promotion gate: a candidate takes `champion` only if its score on `evaluate.primary_metric`
(Recall@10 by default) passes `register.threshold` and it is shown, with `register.confidence`,
to be no worse than the champion beyond `register.tolerance`, both measured on the same queries:
the evaluation queries that NEITHER version trained on.

The decision rests on a paired bootstrap of the per-query differences (candidate - champion;
smar.core.intervals), not on two means:
- promoted: the interval's lower bound is above -tolerance, and no slice the evaluation reports
  (cold, the query kinds: smar.evaluation.slices) is worse beyond its own interval;
- rejected: the upper bound is below -tolerance (worse, and sure of it), or a slice is;
- not distinguishable: neither; the champion stays, and the reason gives the interval.
`tolerance` is a margin of non-inferiority: with 0, a candidate must be shown better than the
champion to replace it, so an equal one never churns the alias.

Each saved model records the ids and the texts of the queries it trained on
(smar.model.checkpoint), so a champion trained on a different split of the same catalog (one
whose training queries are now test queries) is never measured on queries it has seen, nor
on a query it saw under another id (a dataset built from the search log names its queries by
their normalised text). With fewer than
`register.min_gate_queries` such queries the gate refuses to decide, and the candidate stays
challenger; a slice with fewer is reported, not judged. A champion saved before the record
existed is compared on every evaluation query, and the reason says so.

A reindex (the champion's towers over a changed catalog) is judged by `reindex_decision`: the
towers are the champion's, so what can go wrong is the new index, and what a grown catalog
lowers (more distractors) is no reason to keep serving the old one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from smar.core.errors import SmarError
from smar.core.intervals import Interval, paired_bootstrap
from smar.core.metrics import Metric, mean_score, per_query_scores

PROMOTED, REJECTED, NOT_DISTINGUISHABLE = "promoted", "rejected", "not distinguishable"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    verdict: str = ""  # PROMOTED, REJECTED or NOT_DISTINGUISHABLE (the version's gate.decision tag)

    def __post_init__(self):
        if not self.verdict:
            object.__setattr__(self, "verdict", PROMOTED if self.promote else REJECTED)


@dataclass(frozen=True)
class Measured:
    """A version's rankings of the evaluation queries (as deep as the metric's k), and the queries it trained on."""

    rankings: dict[str, list[str]]
    trained: frozenset[str] | None  # the ids of its training queries; None: the version records none
    trained_texts: frozenset[str] = frozenset()  # their texts, normalised (smar.traffic.dataset.normalise)


@dataclass(frozen=True)
class Comparison:
    """The candidate's and the champion's score (None: no champion) on the same queries, and how
    sure their difference is: over all of them and within each slice."""

    metric: Metric  # evaluate.primary_metric
    candidate: float | None  # None: no query is left to measure it on
    champion: float | None
    queries: int  # evaluation queries neither version trained on: what the numbers cover
    left_out: int  # evaluation queries one of them trained on
    note: str = ""
    difference: Interval | None = None  # candidate - champion per query, paired bootstrap; None: no champion
    slices: dict[str, Interval] = field(default_factory=dict)  # the same within each slice of those queries


def compare_on_unseen(
    candidate: Measured,
    champion: Measured | None,
    relevant: dict[str, dict[str, int]],
    metric: Metric,
    texts: dict[str, str] | None = None,
    slices: dict[str, dict[str, dict[str, int]]] | None = None,
    confidence: float = 0.95,
    only: set[str] | None = None,
) -> Comparison:
    """Both versions' `metric` on the evaluation queries that neither trained on (by id or, with
    the evaluation queries' `texts`, by normalised text; and among `only`, when given), and the
    paired interval of their difference at `confidence`, overall and in each of `slices`."""
    from smar.evaluation.slices import OVERALL
    from smar.traffic.dataset import normalise

    versions = [candidate] if champion is None else [candidate, champion]
    seen = {query for version in versions for query in version.trained or ()}
    seen_texts = {text for version in versions for text in version.trained_texts}
    texts = texts or {}

    def unseen_query(query: str) -> bool:
        return query not in seen and (query not in texts or normalise(texts[query]) not in seen_texts)

    unseen = {
        query: items
        for query, items in relevant.items()
        if items and unseen_query(query) and (only is None or query in only)
    }
    note = (
        "the champion records no training queries, so it is measured on every evaluation query"
        if champion and champion.trained is None
        else ""
    )
    if not unseen:
        return Comparison(metric, None, None, 0, len(relevant), note)

    def difference(among: dict[str, dict[str, int]]) -> Interval:
        ours = per_query_scores(candidate.rankings, among, metric)
        theirs = per_query_scores(champion.rankings, among, metric)
        return paired_bootstrap([a - b for a, b in zip(ours, theirs)], confidence)

    within = {}
    if champion is not None:
        for name, sliced in (slices or {}).items():
            kept = {query: items for query, items in sliced.items() if query in unseen and items}
            if name != OVERALL and kept:
                within[name] = difference(kept)
    return Comparison(
        metric,
        mean_score(candidate.rankings, unseen, metric),
        mean_score(champion.rankings, unseen, metric) if champion else None,
        len(unseen),
        len(relevant) - len(unseen),
        note,
        difference(unseen) if champion else None,
        within,
    )


def promotion_decision(
    comparison: Comparison, threshold: float, tolerance: float = 0.0, min_queries: int = 1
) -> Decision:
    """The gate: enough unseen queries, the candidate's score above the threshold, and shown no
    worse than the champion's beyond `tolerance`, overall and in every slice (module docstring)."""
    refused = _refusal(comparison, threshold, tolerance, min_queries)
    if refused:
        return refused
    candidate, champion, label, difference = (
        comparison.candidate,
        comparison.champion,
        comparison.metric.label,
        comparison.difference,
    )
    if champion is None:
        return Decision(True, f"{label} {candidate:.4f} passes the threshold {threshold:.4f}; there is no champion yet")
    scores = (
        f"{label} {candidate:.4f} against the champion's {champion:.4f} on the {comparison.queries} queries "
        f"neither trained on"
    )
    if difference.low > -tolerance:
        return Decision(
            True,
            f"{scores}: candidate - champion {difference}, above {_margin(tolerance)} (no slice worse beyond its "
            f"interval)",
        )
    return Decision(
        False,
        f"{scores}: candidate - champion {difference} spans {_margin(tolerance)}, so the two are not "
        f"distinguishable on these queries; the champion stays",
        NOT_DISTINGUISHABLE,
    )


def reindex_decision(
    comparison: Comparison,
    threshold: float,
    tolerance: float,
    min_queries: int,
    exactness: float,
    target_exactness: float,
    findable: tuple[int, int],
) -> Decision:
    """The gate for a reindex: the champion's towers over a new catalog. `comparison` covers the
    queries whose relevant items are all in both catalogs (what the new index must still serve);
    `exactness` is the new index's Recall@10 against exact search over its embeddings, and
    `findable` (found, tried) counts the new items found in the top 10 of their own title.
    Promoted unless the index misses `target_exactness` (index.target_recall), new items are not
    findable as often, or those queries are worse beyond the interval; a grown catalog's
    distractors lower the score a little, and that is no reason to keep the old index."""
    refused = _refusal(comparison, threshold, tolerance, min_queries)
    if refused:
        return refused
    if exactness < target_exactness:
        return Decision(
            False,
            f"the new index finds {exactness:.4f} of exact search's top 10, below index.target_recall "
            f"{target_exactness}",
        )
    found, tried = findable
    if tried and found / tried < target_exactness:
        return Decision(
            False,
            f"only {found} of {tried} new items are in the top 10 of a search for their own title (the index needs "
            f"{target_exactness:.0%}): the export or the index lost them",
        )
    new = f"{found} of {tried} new items found by their title" if tried else "no new items"
    return Decision(
        True,
        f"reindex: {comparison.metric.label} {comparison.candidate:.4f} against the champion's "
        f"{comparison.champion:.4f} on the {comparison.queries} queries whose relevant items are in both catalogs: "
        f"candidate - champion {comparison.difference}, not worse beyond {_margin(tolerance)}; {new}; index exactness "
        f"{exactness:.4f}",
    )


def _refusal(comparison: Comparison, threshold: float, tolerance: float, min_queries: int) -> Decision | None:
    """What refuses a candidate whatever else holds: too few queries to decide on, a score below
    the threshold, or a difference from the champion below -tolerance, overall or in a slice."""
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
        return None
    if comparison.difference.high < -tolerance:
        return Decision(
            False,
            f"{label} {candidate:.4f} is worse than the champion's {champion:.4f} on the {queries} queries neither "
            f"trained on: candidate - champion {comparison.difference}, below {_margin(tolerance)}",
        )
    worse = [
        f"{name} {interval}"
        for name, interval in comparison.slices.items()
        if interval.queries >= min_queries and interval.high < -tolerance
    ]
    if worse:
        return Decision(
            False,
            f"{label} {candidate:.4f} against the champion's {champion:.4f} on the {queries} queries neither "
            f"trained on, but worse beyond the interval on {'; '.join(worse)} (candidate - champion)",
        )
    return None


def _margin(tolerance: float) -> str:
    return f"-{tolerance:g}" if tolerance else "0"


def gate(
    client, model_name: str, version: str, judge: Callable[[str | None], tuple[Decision, Comparison]], attempts: int = 5
):
    """Decide against the current champion and, on a pass, move the alias by compare-and-set.

    `judge(champion_version or None)` measures the candidate and that champion on the same
    queries and decides (`promotion_decision` or `reindex_decision` with their settings). When
    another promotion moves the champion between the decision and the move, the candidate is
    judged again against the new champion. Returns (decision, champion version, comparison).
    """
    from smar.registry.promotion import ChampionMoved, current_champion, move_champion

    judged: dict[str | None, tuple[Decision, Comparison]] = {}
    for _ in range(attempts):
        champion_version = current_champion(client, model_name)
        if champion_version == version:  # promoted already (a retried register, or by hand): nothing to move
            return Decision(True, f"version {version} is the champion already"), champion_version, judge(None)[1]
        if champion_version not in judged:
            judged[champion_version] = judge(champion_version)
        decision, comparison = judged[champion_version]
        if comparison.note:
            decision = Decision(decision.promote, f"{decision.reason} ({comparison.note})", decision.verdict)
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
