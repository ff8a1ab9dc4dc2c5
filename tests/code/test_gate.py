"""The promotion gate on the primary metric (Recall@10 here), measured on the queries neither
version trained on, deciding on the paired interval of the difference: promoted, rejected or
not distinguishable, overall and per slice; and a reindex's gate."""

from smar.registry.gate import (
    NOT_DISTINGUISHABLE,
    PROMOTED,
    REJECTED,
    Decision,
    Measured,
    compare_on_unseen,
    promotion_decision,
    reindex_decision,
)
from tests.comparisons import RECALL_AT_10, scored

RELEVANT = {f"q{n}": {f"i{n}": 1} for n in range(10)}
MANY = {f"q{n}": {f"i{n}": 1} for n in range(400)}  # enough queries for an interval to be narrow


def decide(candidate, champion, threshold, tolerance=0.0, queries=100, min_queries=1) -> Decision:
    """The gate's decision on these scores, measured on `queries` unseen queries (every query differing alike)."""
    return promotion_decision(scored(candidate, champion, queries), threshold, tolerance, min_queries)


def hitting(queries: int, hits) -> Measured:
    """A version trained on nothing that ranks query n's relevant item first when n is in `hits`."""
    return Measured({f"q{n}": [f"i{n}" if n in hits else "other"] for n in range(queries)}, frozenset())


def rankings(hits: set[int]) -> dict[str, list[str]]:
    """Each query ranks its relevant item first when it is in `hits`, else nothing relevant."""
    return {f"q{n}": [f"i{n}" if n in hits else "other"] for n in range(10)}


def test_first_model_above_threshold_is_promoted():
    decision = decide(0.3, None, threshold=0.2)
    assert decision.promote is True
    assert "0.3000" in decision.reason
    assert "0.2000" in decision.reason
    assert "no champion" in decision.reason


def test_first_model_exactly_at_threshold_is_promoted():
    assert decide(0.2, None, threshold=0.2).promote is True


def test_below_threshold_is_rejected_without_champion():
    decision = decide(0.15, None, threshold=0.2)
    assert decision == Decision(False, "Recall@10 0.1500 is below the threshold 0.2000")


def test_below_threshold_is_rejected_even_when_better_than_champion():
    decision = decide(0.15, 0.1, threshold=0.2)
    assert decision.promote is False
    assert "below the threshold 0.2000" in decision.reason


def test_worse_than_champion_is_rejected():
    decision = decide(0.3, 0.35, threshold=0.2)
    assert decision.promote is False
    assert "0.3000" in decision.reason
    assert "0.3500" in decision.reason
    assert "worse than the champion" in decision.reason


def test_equal_to_champion_is_promoted_within_a_tolerance_and_not_distinguishable_without():
    decision = decide(0.3, 0.3, threshold=0.2, tolerance=0.01)
    assert decision.promote is True and decision.verdict == PROMOTED
    assert "0.3000" in decision.reason
    assert "champion's 0.3000" in decision.reason
    same = decide(0.3, 0.3, threshold=0.2)
    assert same.promote is False and same.verdict == NOT_DISTINGUISHABLE and "champion stays" in same.reason


def test_better_than_champion_is_promoted():
    decision = decide(0.4, 0.3, threshold=0.2)
    assert decision.promote is True
    assert "Recall@10 0.4000" in decision.reason
    assert "champion's 0.3000" in decision.reason


def test_within_tolerance_of_champion_is_promoted():
    decision = decide(0.29, 0.3, threshold=0.2, tolerance=0.02)
    assert decision.promote is True
    assert "0.2900" in decision.reason
    assert "0.3000" in decision.reason


def test_beyond_tolerance_of_champion_is_rejected():
    decision = decide(0.27, 0.3, threshold=0.2, tolerance=0.02)
    assert decision.promote is False
    assert "0.2700" in decision.reason


def test_a_clearly_better_candidate_is_promoted_and_the_reason_gives_the_interval():
    """Better on 60 of 400 queries, worse on none: the interval lies above 0."""
    comparison = compare_on_unseen(hitting(400, range(160)), hitting(400, range(100)), MANY, RECALL_AT_10)
    assert (
        comparison.difference.mean == 0.15 and comparison.difference.low > 0.1 and comparison.difference.queries == 400
    )
    decision = promotion_decision(comparison, threshold=0.1)
    assert (
        decision.verdict == PROMOTED
        and "candidate - champion +0.1500 [" in decision.reason
        and "95%" in decision.reason
    )


def test_a_clearly_worse_candidate_is_rejected_with_its_interval():
    comparison = compare_on_unseen(hitting(400, range(100)), hitting(400, range(160)), MANY, RECALL_AT_10)
    decision = promotion_decision(comparison, threshold=0.1, tolerance=0.01)
    assert decision.verdict == REJECTED and "worse than the champion's 0.4000" in decision.reason
    assert "-0.1500 [" in decision.reason and comparison.difference.high < -0.01


def test_noise_is_not_distinguishable_and_keeps_the_champion():
    """Each finds 20 queries the other misses: the means differ by nothing, the interval spans 0
    both ways, and neither a promotion nor a refusal is honest."""
    comparison = compare_on_unseen(
        hitting(400, set(range(100)) | set(range(300, 320))),
        hitting(400, set(range(100)) | set(range(200, 220))),
        MANY,
        RECALL_AT_10,
    )
    assert comparison.difference.low < -0.01 < 0.01 < comparison.difference.high
    decision = promotion_decision(comparison, threshold=0.1, tolerance=0.01)
    assert decision.promote is False and decision.verdict == NOT_DISTINGUISHABLE
    assert "not distinguishable" in decision.reason and "champion stays" in decision.reason


def test_a_slice_worse_beyond_its_interval_rejects_a_candidate_better_overall():
    """Better by 80 queries among q0-q299, worse on all 40 of the cold slice q300-q339."""
    cold = {f"q{n}": {f"i{n}": 1} for n in range(300, 340)}
    comparison = compare_on_unseen(
        hitting(400, range(80)), hitting(400, range(300, 340)), MANY, RECALL_AT_10, slices={"cold": cold}
    )
    assert comparison.difference.low > 0 and comparison.slices["cold"].high < -0.5
    decision = promotion_decision(comparison, threshold=0.1, tolerance=0.01, min_queries=30)
    assert decision.verdict == REJECTED and "worse beyond the interval on cold -1.0000" in decision.reason
    small = promotion_decision(comparison, threshold=0.1, tolerance=0.01, min_queries=41)  # too few to judge the slice
    assert small.verdict == PROMOTED


def test_a_reindex_of_a_grown_catalog_a_little_worse_within_the_tolerance_is_promoted():
    """The new catalog's distractors push 2 of 400 relevant items out of a top 10: a promotion
    gate with tolerance 0 would keep the old index for good."""
    comparison = compare_on_unseen(hitting(400, range(2, 300)), hitting(400, range(300)), MANY, RECALL_AT_10)
    decision = reindex_decision(comparison, 0.1, 0.01, 30, exactness=0.99, target_exactness=0.95, findable=(50, 50))
    assert decision.verdict == PROMOTED and "50 of 50 new items found" in decision.reason
    assert promotion_decision(comparison, 0.1, 0.0, 30).promote is False


def test_a_reindex_whose_new_items_cannot_be_found_or_whose_index_is_inexact_is_rejected():
    same = compare_on_unseen(hitting(400, range(300)), hitting(400, range(300)), MANY, RECALL_AT_10)
    lost = reindex_decision(same, 0.1, 0.01, 30, exactness=0.99, target_exactness=0.95, findable=(3, 50))
    assert lost.verdict == REJECTED and "only 3 of 50 new items" in lost.reason
    inexact = reindex_decision(same, 0.1, 0.01, 30, exactness=0.80, target_exactness=0.95, findable=(50, 50))
    assert inexact.verdict == REJECTED and "below index.target_recall 0.95" in inexact.reason
    shuffled = compare_on_unseen(hitting(400, range(30)), hitting(400, range(300)), MANY, RECALL_AT_10)
    worse = reindex_decision(shuffled, 0.05, 0.01, 30, exactness=0.99, target_exactness=0.95, findable=(50, 50))
    assert worse.verdict == REJECTED and "worse than the champion's" in worse.reason


def test_versions_are_compared_only_on_queries_neither_trained_on():
    """The champion trained on q0-q4 (and finds them all); the candidate on q8, q9. Leakage
    would make the champion 0.7 against the candidate's 0.4; on q5-q7 it is 1/3 against 2/3."""
    champion = Measured(rankings({0, 1, 2, 3, 4, 5}), trained=frozenset({"q0", "q1", "q2", "q3", "q4"}))
    candidate = Measured(rankings({6, 7, 8, 9}), trained=frozenset({"q8", "q9"}))
    comparison = compare_on_unseen(candidate, champion, RELEVANT, RECALL_AT_10)
    assert (comparison.queries, comparison.left_out) == (3, 7)
    assert round(comparison.candidate, 4) == 0.6667 and round(comparison.champion, 4) == 0.3333
    assert promotion_decision(comparison, threshold=0.1).verdict == NOT_DISTINGUISHABLE  # 3 queries cannot tell


def test_without_a_champion_only_the_candidates_own_training_queries_are_left_out():
    comparison = compare_on_unseen(Measured(rankings({0, 1}), trained=frozenset({"q0"})), None, RELEVANT, RECALL_AT_10)
    assert comparison.champion is None and (comparison.queries, comparison.left_out) == (9, 1)
    assert round(comparison.candidate, 4) == round(1 / 9, 4)


def test_a_query_trained_on_under_another_id_is_left_out_by_its_text():
    """A dataset built from the search log names its queries by their text: the champion's
    training query 'Red  Mug' (kept normalised) comes back as q3 'red mug', and is not unseen."""
    texts = {f"q{n}": f"query {n}" for n in range(10)} | {"q3": "red mug"}
    champion = Measured(rankings(set(range(10))), trained=frozenset({"x7"}), trained_texts=frozenset({"red mug"}))
    comparison = compare_on_unseen(Measured(rankings({0}), frozenset()), champion, RELEVANT, RECALL_AT_10, texts)
    assert (comparison.queries, comparison.left_out) == (9, 1)
    assert compare_on_unseen(Measured(rankings({0}), frozenset()), champion, RELEVANT, RECALL_AT_10).queries == 10


def test_a_champion_without_a_record_is_measured_on_every_query_and_the_reason_says_so():
    comparison = compare_on_unseen(
        Measured(rankings({0}), frozenset()), Measured(rankings({0, 1}), None), RELEVANT, RECALL_AT_10
    )
    assert comparison.queries == 10 and "records no training queries" in comparison.note


def test_too_few_unseen_queries_is_no_decision():
    decision = decide(0.9, 0.1, threshold=0.2, queries=12, min_queries=30)
    assert decision.promote is False
    assert "only 12 evaluation queries are unseen" in decision.reason and "needs 30" in decision.reason
    assert decide(None, 0.1, threshold=0.2, queries=0, min_queries=1).promote is False
