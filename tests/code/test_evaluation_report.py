"""The evaluation's report: the model beside zero-shot MiniLM and random, overall and cold,
as the summary prints it and as MLflow metrics."""

from smar.core.metrics import retrieval_metrics
from smar.evaluation.report import format_table, tracked_metrics

SCORES = {"recall_at_10": 0.8, "ndcg_at_10": 0.6}
ZERO = {"recall_at_10": 0.5, "ndcg_at_10": 0.4}
RANDOM = {"recall_at_10": 0.01, "ndcg_at_10": 0.01}


def result(cold_queries: int) -> dict:
    cold = {"queries": cold_queries}
    if cold_queries:
        cold |= {
            "model": {"recall_at_10": 0.7, "ndcg_at_10": 0.5},
            "zero_shot": {"recall_at_10": 0.35, "ndcg_at_10": 0.3},
            "random": RANDOM,
        }
    return {
        "split": "test",
        "queries": 100,
        "primary_metric": "recall_at_10",
        "model": SCORES,
        "zero_shot": ZERO,
        "random": RANDOM,
        "cold": cold,
        "index": {"factory": "Flat", "recall_at_10": 1.0},
    }


def test_table_shows_the_baselines_and_the_cold_slice():
    table = format_table(result(40))
    assert table.splitlines()[0].split() == ["metric", "model", "zero-shot", "random"]
    assert "Recall@10          0.8000     0.5000     0.0100" in table
    assert "Cold: 40 of 100 queries about items no training query touched:" in table
    assert "Recall@10          0.7000     0.3500     0.0100" in table
    assert table.endswith("0.8000 vs 0.5000 (1.60x) over all queries, 0.7000 vs 0.3500 (2.00x) on the cold ones.")


def test_table_says_when_there_is_no_cold_query_or_only_cold_ones():
    assert "Cold: no query is about items that training never saw" in format_table(result(0))
    assert "Cold: all 100 queries are about items no training query touched." in format_table(result(100))
    without_baseline = {k: v for k, v in result(0).items() if k != "zero_shot"}
    assert "zero-shot" not in format_table(without_baseline)


def test_mlflow_metrics_name_the_slice_and_the_ranker():
    tracked = tracked_metrics(result(40))
    assert tracked["test.recall_at_10"] == 0.8 and tracked["test.zero_shot.recall_at_10"] == 0.5
    assert tracked["test.cold.recall_at_10"] == 0.7 and tracked["test.cold.zero_shot.ndcg_at_10"] == 0.3
    assert tracked["test.cold.queries"] == 40 and tracked["test.index.recall_at_10"] == 1.0
    assert not any("random" in name for name in tracked)


def test_the_tables_follow_the_cutoffs_and_lead_with_the_primary_metric():
    """evaluate.ks without 10: every row is a metric at 20 or 50, and the verdict line is on the primary metric."""
    rankings, relevant = {"q1": [f"i{n}" for n in range(60)]}, {"q1": {"i15": 1, "i40": 1}}
    scores = retrieval_metrics(rankings, relevant, ks=(20, 50))
    zero = retrieval_metrics({"q1": []}, relevant, ks=(20, 50))
    evaluation = {"split": "test", "queries": 1, "primary_metric": "recall_at_20", "cold": {"queries": 0}}
    table = format_table(evaluation | {"model": scores, "zero_shot": zero, "random": zero})
    rows = [line.rsplit(maxsplit=3)[0] for line in table.splitlines()[2:14]]
    names = ("Recall", "Precision", "F1", "MRR", "NDCG", "binary NDCG")
    assert rows == [f"{name}@{k}" for k in (20, 50) for name in names]
    assert table.endswith("Recall@20 against zero-shot MiniLM (no training): 0.5000 vs 0.0000 over all queries.")
