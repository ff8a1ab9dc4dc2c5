"""The promotion gate on Recall@10."""

from smar.registry.gate import Decision, promotion_decision


def test_first_model_above_threshold_is_promoted():
    decision = promotion_decision(0.3, None, threshold=0.2)
    assert decision.promote is True
    assert "0.3000" in decision.reason
    assert "0.2000" in decision.reason
    assert "no champion" in decision.reason


def test_first_model_exactly_at_threshold_is_promoted():
    assert promotion_decision(0.2, None, threshold=0.2).promote is True


def test_below_threshold_is_rejected_without_champion():
    decision = promotion_decision(0.15, None, threshold=0.2)
    assert decision == Decision(False, "Recall@10 0.1500 is below the threshold 0.2000")


def test_below_threshold_is_rejected_even_when_better_than_champion():
    decision = promotion_decision(0.15, 0.1, threshold=0.2)
    assert decision.promote is False
    assert "below the threshold 0.2000" in decision.reason


def test_worse_than_champion_is_rejected():
    decision = promotion_decision(0.3, 0.35, threshold=0.2)
    assert decision.promote is False
    assert "0.3000" in decision.reason
    assert "0.3500" in decision.reason
    assert "worse than the champion" in decision.reason


def test_equal_to_champion_is_promoted():
    decision = promotion_decision(0.3, 0.3, threshold=0.2)
    assert decision.promote is True
    assert "0.3000" in decision.reason
    assert "champion's 0.3000" in decision.reason


def test_better_than_champion_is_promoted():
    decision = promotion_decision(0.4, 0.3, threshold=0.2)
    assert decision.promote is True
    assert "Recall@10 0.4000" in decision.reason
    assert "champion's 0.3000" in decision.reason


def test_within_tolerance_of_champion_is_promoted():
    decision = promotion_decision(0.29, 0.3, threshold=0.2, tolerance=0.02)
    assert decision.promote is True
    assert "0.2900" in decision.reason
    assert "0.3000" in decision.reason


def test_beyond_tolerance_of_champion_is_rejected():
    decision = promotion_decision(0.27, 0.3, threshold=0.2, tolerance=0.02)
    assert decision.promote is False
    assert "0.2700" in decision.reason


def test_default_tolerance_is_zero():
    assert promotion_decision(0.2999, 0.3, threshold=0.2).promote is False
