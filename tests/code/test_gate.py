"""The promotion gate on the primary metric (Recall@10 here), measured on the queries neither version trained on."""

from smar.core.metrics import Metric
from smar.registry.gate import Comparison, Decision, Measured, compare_on_unseen, promotion_decision

RECALL_AT_10 = Metric("recall", 10)

RELEVANT = {f"q{n}": {f"i{n}": 1} for n in range(10)}


def decide(candidate, champion, threshold, tolerance=0.0, queries=100, min_queries=1) -> Decision:
    """The gate's decision on these scores, measured on `queries` unseen queries."""
    comparison = Comparison(RECALL_AT_10, candidate, champion, queries, left_out=0)
    return promotion_decision(comparison, threshold, tolerance, min_queries)


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


def test_equal_to_champion_is_promoted():
    decision = decide(0.3, 0.3, threshold=0.2)
    assert decision.promote is True
    assert "0.3000" in decision.reason
    assert "champion's 0.3000" in decision.reason


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


def test_default_tolerance_is_zero():
    assert decide(0.2999, 0.3, threshold=0.2).promote is False


def test_versions_are_compared_only_on_queries_neither_trained_on():
    """The champion trained on q0-q4 (and finds them all); the candidate on q8, q9. Leakage
    would make the champion 0.7 against the candidate's 0.4; on q5-q7 it is 1/3 against 2/3."""
    champion = Measured(rankings({0, 1, 2, 3, 4, 5}), trained=frozenset({"q0", "q1", "q2", "q3", "q4"}))
    candidate = Measured(rankings({6, 7, 8, 9}), trained=frozenset({"q8", "q9"}))
    comparison = compare_on_unseen(candidate, champion, RELEVANT, RECALL_AT_10)
    assert (comparison.queries, comparison.left_out) == (3, 7)
    assert round(comparison.candidate, 4) == 0.6667 and round(comparison.champion, 4) == 0.3333
    assert promotion_decision(comparison, threshold=0.1).promote


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
