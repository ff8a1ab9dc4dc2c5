"""The evaluation's report: the model beside zero-shot MiniLM and random, overall and cold,
as the summary prints it and as MLflow metrics."""

from smar.evaluation.report import format_table, tracked_metrics

SCORES = {"recall@10": 0.8, "ndcg@10": 0.6}
ZERO = {"recall@10": 0.5, "ndcg@10": 0.4}
RANDOM = {"recall@10": 0.01, "ndcg@10": 0.01}


def result(cold_queries: int) -> dict:
    cold = {"queries": cold_queries}
    if cold_queries:
        cold |= {
            "model": {"recall@10": 0.7, "ndcg@10": 0.5},
            "zero_shot": {"recall@10": 0.35, "ndcg@10": 0.3},
            "random": RANDOM,
        }
    return {"split": "test", "queries": 100, "model": SCORES, "zero_shot": ZERO, "random": RANDOM, "cold": cold}


def test_table_shows_the_baselines_and_the_cold_slice():
    table = format_table(result(40))
    assert table.splitlines()[0].split() == ["metric", "model", "zero-shot", "random"]
    assert "recall@10          0.8000     0.5000     0.0100" in table
    assert "Cold: 40 of 100 queries about items no training query touched:" in table
    assert "recall@10          0.7000     0.3500     0.0100" in table
    assert table.endswith("0.8000 vs 0.5000 (1.60x) over all queries, 0.7000 vs 0.3500 (2.00x) on the cold ones.")


def test_table_says_when_there_is_no_cold_query_or_only_cold_ones():
    assert "Cold: no query is about items that training never saw" in format_table(result(0))
    assert "Cold: all 100 queries are about items no training query touched." in format_table(result(100))
    without_baseline = {k: v for k, v in result(0).items() if k != "zero_shot"}
    assert "zero-shot" not in format_table(without_baseline)


def test_mlflow_metrics_name_the_slice_and_the_ranker():
    tracked = tracked_metrics(result(40))
    assert tracked["test_recall_at_10"] == 0.8 and tracked["test_zero_shot_recall_at_10"] == 0.5
    assert tracked["test_cold_recall_at_10"] == 0.7 and tracked["test_cold_zero_shot_ndcg_at_10"] == 0.3
    assert tracked["test_cold_queries"] == 40 and not any("random" in name for name in tracked)
