"""Retrieval metrics against hand-computed values."""

import math

import pytest

from smar.core.metrics import per_query_metrics, retrieval_metrics

RANKING = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"]


def test_one_hit_at_rank_two_of_two_relevant():
    scores = per_query_metrics(RANKING, {"b": 1, "x": 1}, ks=(10,))
    assert scores["recall_at_10"] == pytest.approx(1 / 2)
    assert scores["precision_at_10"] == pytest.approx(1 / 10)
    assert scores["mrr_at_10"] == pytest.approx(1 / 2)
    assert scores["ndcg_at_10"] == pytest.approx((1 / math.log2(3)) / (1 / math.log2(2) + 1 / math.log2(3)))
    assert scores["bndcg_at_10"] == scores["ndcg_at_10"]  # every gain is 1
    assert set(scores) == {"recall_at_10", "precision_at_10", "mrr_at_10", "ndcg_at_10", "bndcg_at_10"}


def test_hit_beyond_ten_counts_only_for_larger_k():
    scores = per_query_metrics(RANKING, {"l": 1}, ks=(10, 12))
    assert scores["recall_at_10"] == 0.0
    assert scores["recall_at_12"] == pytest.approx(1 / 1)
    assert scores["precision_at_12"] == pytest.approx(1 / 12)
    assert scores["mrr_at_10"] == 0.0  # rank 12 is outside the MRR@10 cutoff
    assert scores["ndcg_at_10"] == 0.0


def test_precision_divides_by_k_even_for_short_rankings():
    scores = per_query_metrics(["a", "b"], {"a": 1, "b": 1}, ks=(10,))
    assert scores["recall_at_10"] == pytest.approx(2 / 2)
    assert scores["precision_at_10"] == pytest.approx(2 / 10)
    assert scores["mrr_at_10"] == pytest.approx(1 / 1)
    assert scores["ndcg_at_10"] == pytest.approx(1.0)


def test_graded_labels_use_label_as_gain():
    # relevant c (label 3, rank 3) and a (label 1, rank 1); ideal order is 3 then 1
    scores = per_query_metrics(RANKING, {"a": 1, "c": 3}, ks=(10,))
    dcg = 1 / math.log2(1 + 1) + 3 / math.log2(3 + 1)
    ideal = 3 / math.log2(1 + 1) + 1 / math.log2(2 + 1)
    assert scores["ndcg_at_10"] == pytest.approx(dcg / ideal)
    binary_dcg = 1 / math.log2(1 + 1) + 1 / math.log2(3 + 1)  # the same ranks, every gain 1
    assert scores["bndcg_at_10"] == pytest.approx(binary_dcg / (1 / math.log2(2) + 1 / math.log2(3)))
    assert scores["recall_at_10"] == pytest.approx(2 / 2)
    assert scores["mrr_at_10"] == pytest.approx(1 / 1)


def test_perfect_graded_ranking_has_ndcg_one():
    scores = per_query_metrics(["a", "b", "c"], {"a": 3, "b": 2, "c": 1}, ks=(10,))
    assert scores["ndcg_at_10"] == pytest.approx(1.0)


def test_ideal_dcg_is_cut_at_ten():
    relevant = {f"r{n}": 1 for n in range(20)}
    ranking = [f"r{n}" for n in range(10)]
    scores = per_query_metrics(ranking, relevant, ks=(10,))
    assert scores["ndcg_at_10"] == pytest.approx(1.0)
    assert scores["recall_at_10"] == pytest.approx(10 / 20)


def test_no_hit_in_top_ten_gives_zero_mrr_and_ndcg():
    scores = per_query_metrics(RANKING[:10], {"zzz": 1}, ks=(10,))
    assert scores == dict.fromkeys(["recall_at_10", "precision_at_10", "mrr_at_10", "ndcg_at_10", "bndcg_at_10"], 0.0)


def test_retrieval_metrics_average_over_queries_and_f1_of_averages():
    rankings = {"q1": RANKING, "q2": ["x", "y", "b", "z"]}
    relevant = {"q1": {"a": 1, "b": 1}, "q2": {"b": 1, "c": 1, "d": 1, "e": 1}}
    report = retrieval_metrics(rankings, relevant, ks=(10,))
    recall = (2 / 2 + 1 / 4) / 2
    precision = (2 / 10 + 1 / 10) / 2
    assert report["recall_at_10"] == pytest.approx(recall)
    assert report["precision_at_10"] == pytest.approx(precision)
    assert report["f1_at_10"] == pytest.approx(2 * precision * recall / (precision + recall))
    # not the mean of per-query F1s
    per_query_f1 = [2 * (2 / 10) * 1 / (2 / 10 + 1), 2 * (1 / 10) * (1 / 4) / (1 / 10 + 1 / 4)]
    assert report["f1_at_10"] != pytest.approx(sum(per_query_f1) / 2)
    assert report["mrr_at_10"] == pytest.approx((1 / 1 + 1 / 3) / 2)
    ndcg_q1 = 1.0
    ndcg_q2 = (1 / math.log2(4)) / sum(1 / math.log2(r + 1) for r in range(1, 5))
    assert report["ndcg_at_10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2)
    assert report["bndcg_at_10"] == report["ndcg_at_10"]  # binary labels: the two are one
    assert set(report) == {"recall_at_10", "precision_at_10", "f1_at_10", "mrr_at_10", "ndcg_at_10", "bndcg_at_10"}


def test_query_missing_from_rankings_counts_as_zero():
    relevant = {"q1": {"a": 1}, "q2": {"b": 1}}
    report = retrieval_metrics({"q1": ["a"]}, relevant, ks=(10,))
    assert report["recall_at_10"] == pytest.approx((1 + 0) / 2)
    assert report["precision_at_10"] == pytest.approx((1 / 10 + 0) / 2)
    assert report["mrr_at_10"] == pytest.approx((1 + 0) / 2)
    assert report["ndcg_at_10"] == pytest.approx((1 + 0) / 2)


def test_queries_without_relevant_items_are_skipped():
    relevant = {"q1": {"a": 1}, "q2": {}}
    report = retrieval_metrics({"q1": ["a"], "q2": ["a"]}, relevant, ks=(10,))
    assert report["recall_at_10"] == pytest.approx(1.0)
    assert report["mrr_at_10"] == pytest.approx(1.0)


def test_all_zero_gives_zero_f1_not_division_error():
    report = retrieval_metrics({"q1": ["x"]}, {"q1": {"a": 1}}, ks=(10, 50))
    assert report["f1_at_10"] == 0.0
    assert report["f1_at_50"] == 0.0


def test_no_relevant_items_raises_value_error():
    with pytest.raises(ValueError, match="no query with relevant items"):
        retrieval_metrics({"q1": ["a"]}, {})
    with pytest.raises(ValueError, match="no query with relevant items"):
        retrieval_metrics({"q1": ["a"]}, {"q1": {}})
