"""Gate comparisons made from two scores, for tests of what decides on them (the promotion race,
the alias's compare-and-set): every query differs by the same amount, so the interval is a point."""

from smar.core.intervals import Interval
from smar.core.metrics import Metric
from smar.registry.gate import Comparison

RECALL_AT_10 = Metric("recall", 10)


def scored(candidate: float | None, champion: float | None, queries: int = 100) -> Comparison:
    """Candidate and champion Recall@10 on `queries` unseen queries (None: no champion)."""
    difference = None
    if candidate is not None and champion is not None:
        gap = candidate - champion
        difference = Interval(gap, gap, gap, 0.95, queries)
    return Comparison(RECALL_AT_10, candidate, champion, queries, left_out=0, difference=difference)
