"""`smar data from-logs`: logged searches and events become a dataset that passes validation;
position bias estimated from the explored searches (it recovers the click model's known
examination probabilities) and corrected; bad records dropped and counted, never fatal."""

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from smar.core.config import FromLogsConfig, SmarConfig
from smar.core.errors import DatasetError
from smar.core.paths import Paths
from smar.data.validation import validate
from smar.traffic.dataset import from_logs, normalise, query_id
from smar.traffic.log import SegmentWriter
from smar.traffic.shoppers import Shoppers, shopper_events

START = datetime(2026, 11, 1, tzinfo=UTC)
SHOPPERS = Shoppers()


def write_log(directory: Path, searches: list[dict], events: list[dict]) -> None:
    for kind, records in (("searches", searches), ("events", events)):
        writer = SegmentWriter(directory / kind, kind).start()
        for record in records:
            writer.append(record)
        writer.close()


def traffic(data: Path, searches: int, *, seed=0, explore=0.3, relevant_at=None, days=10.0, new_share=0.2):
    """Searches of the dataset's train and valid queries over `days`, each showing 10 items, and
    what the simulated shoppers did with them. Explored searches show relevant and other items in
    random order; the others show one relevant item at `relevant_at` (default: anywhere).
    `new_share` of the queries are first searched on the last day, making half its searches."""
    rng = random.Random(seed)
    items = pd.read_parquet(data / "items.parquet")["item_id"].tolist()
    qrels = pd.read_parquet(data / "qrels.parquet")
    texts = pd.read_parquet(data / "queries.parquet").set_index("query_id")["text"]
    truth = qrels.groupby("query_id")["item_id"].agg(set).to_dict()
    pool = sorted(qrels.loc[qrels["split"] != "test", "query_id"].unique())
    rng.shuffle(pool)
    late, early = pool[: int(len(pool) * new_share)], pool[int(len(pool) * new_share) :]
    logged, acted = [], []
    for n in range(searches):
        time = START + timedelta(days=days * n / searches)
        last_day = time > START + timedelta(days=days - 1)
        qid = rng.choice(late if late and last_day and rng.random() < 0.5 else early)  # half the last day's: new
        relevant = sorted(truth[qid])
        others = rng.sample([item for item in items if item not in truth[qid]], 10)
        explored = rng.random() < explore
        if explored:
            shown = rng.sample(relevant[:5] + others, 10)
        else:
            shown = others[:9]
            shown.insert((relevant_at or rng.randint(1, 10)) - 1, rng.choice(relevant))
        search_id = f"S{n:06d}"
        logged.append(
            {
                "time": time.isoformat(),
                "search_id": search_id,
                "session_id": f"s{n // 2}",
                "query": texts[qid].upper() if n % 7 == 0 else texts[qid],  # the same query, written otherwise
                "k": 10,
                "explored": explored,
                "item_ids": shown,
                "scores": [1.0 - i / 10 for i in range(10)],
            }
        )
        later = (time + timedelta(seconds=5)).isoformat()
        for item, event, position in shopper_events(shown, truth[qid], False, SHOPPERS, rng):
            acted.append({"time": later, "search_id": search_id, "item_id": item, "event": event, "position": position})
    return logged, acted, truth, texts


def settings(**changes) -> FromLogsConfig:
    return FromLogsConfig(**({"min_test_queries": 5} | changes))


def test_the_examination_estimate_recovers_the_click_models_known_probabilities(tiny_data, tmp_path):
    searches, events, _, _ = traffic(tiny_data, 6000, explore=1.0)
    write_log(tmp_path / "log", searches, events)
    manifest = from_logs(tmp_path / "log", tiny_data, tmp_path / "dataset", settings())
    examination = {int(p): value for p, value in manifest["source"]["examination"].items()}
    assert examination[1] == 1.0 and sorted(examination) == list(range(1, 11))
    for position, estimate in examination.items():
        assert estimate == pytest.approx(SHOPPERS.examination(position), abs=0.05), position


def test_the_dataset_passes_validation_with_graded_labels_and_a_time_split(tiny_data, tmp_path):
    searches, events, truth, texts = traffic(tiny_data, 4000)
    write_log(tmp_path / "log", searches, events)
    manifest = from_logs(tmp_path / "log", tiny_data, tmp_path / "dataset", settings())
    validate(SmarConfig(), Paths(tmp_path / "dataset", tmp_path / "outputs"))  # raises if the contract is broken

    queries = pd.read_parquet(tmp_path / "dataset" / "queries.parquet")
    qrels = pd.read_parquet(tmp_path / "dataset" / "qrels.parquet")
    assert queries["text"].is_unique and all(text == normalise(text) for text in queries["text"])  # merged
    assert set(qrels["label"]) <= {1, 2, 3} and {1, 3} <= set(qrels["label"])  # click .. purchase
    true_pairs = {(query_id(normalise(texts[q])), item) for q, items in truth.items() for item in items}
    kept = set(zip(qrels["query_id"], qrels["item_id"]))
    assert len(kept & true_pairs) / len(kept) > 0.9  # what the clicks say is mostly what is true
    first_seen = {query_id(normalise(s["query"])): s["time"] for s in reversed(searches)}
    cutoff = (datetime.fromisoformat(searches[-1]["time"]) - timedelta(days=1)).isoformat()
    for qid, split in qrels.drop_duplicates("query_id")[["query_id", "split"]].itertuples(index=False):
        assert (split == "test") == (first_seen[qid] > cutoff), qid  # the last day's new queries are the test
    source = manifest["source"]
    assert source["log_range"][0].startswith("2026-11-01") and source["settings"]["test_days"] == 1.0
    assert source["kept"]["searches"] == 4000 and manifest["counts"]["test_queries"] >= 5


def test_correction_finds_the_relevant_items_shown_low(tiny_data, tmp_path):
    """Every unexplored search shows its relevant item at position 8: examined a fifth as often as
    position 1, so uncorrected its clicks stay under min_rate; corrected they do not."""
    searches, events, truth, texts = traffic(tiny_data, 6000, explore=0.2, relevant_at=8)
    write_log(tmp_path / "log", searches, events)
    true_pairs = {(query_id(normalise(texts[q])), item) for q, items in truth.items() for item in items}
    found = {}
    for bias in ("explored", "none"):
        from_logs(
            tmp_path / "log",
            tiny_data,
            tmp_path / bias,
            settings(position_bias=bias, split_by="query", min_test_queries=1, confidence=0.0),  # the rates as such
        )
        qrels = pd.read_parquet(tmp_path / bias / "qrels.parquet")
        found[bias] = len(set(zip(qrels["query_id"], qrels["item_id"])) & true_pairs)
    assert found["explored"] > 2 * found["none"], found


def test_bad_records_are_dropped_and_counted_never_fatal(tiny_data, tmp_path):
    searches, events, _, _ = traffic(tiny_data, 1500)
    acted_on = {event["search_id"] for event in events}
    known = next(search for search in searches if search["search_id"] not in acted_on)
    shown, later = known["item_ids"], known["time"]
    bad = [
        {"time": later, "search_id": "nowhere", "item_id": shown[0], "event": "click"},
        {"time": later, "search_id": known["search_id"], "item_id": "I-not-in-catalog", "event": "click"},
        {"time": later, "search_id": known["search_id"], "item_id": "I0000199", "event": "click"}
        if "I0000199" not in shown
        else {"time": later, "search_id": known["search_id"], "item_id": "I0000198", "event": "click"},
        {
            "time": (datetime.fromisoformat(later) - timedelta(hours=1)).isoformat(),
            "search_id": known["search_id"],
            "item_id": shown[1],
            "event": "purchase",
        },
    ]
    repeated = events[:25]
    bot = [{**searches[1], "search_id": f"B{n}", "session_id": "bot-1", "time": searches[1]["time"]} for n in range(60)]
    bot_events = [
        {"time": b["time"], "search_id": b["search_id"], "item_id": b["item_ids"][0], "event": "click"} for b in bot
    ]
    write_log(tmp_path / "log", searches + bot, events + bad + repeated + bot_events)
    (tmp_path / "log" / "events" / "README.txt").write_text("someone's notes")
    torn = tmp_path / "log" / "events" / "20261101T000000-crashed-1-0001.jsonl"
    torn.write_bytes(json.dumps(bad[0]).encode() + b'\n{"time": "2026-11-0')  # a crash mid-line

    manifest = from_logs(tmp_path / "log", tiny_data, tmp_path / "dataset", settings())
    dropped, read = manifest["source"]["dropped"]["events"], manifest["source"]["read"]["events"]
    assert dropped["repeated"] == 25 + 1 and dropped["unknown_search"] == 1  # the torn file's whole line repeats one
    assert dropped["bot"] == 60 and manifest["source"]["dropped"]["searches"]["bot"] == 60
    assert (dropped["item_not_in_catalog"], dropped["item_not_shown"], dropped["before_its_search"]) == (1, 1, 1)
    assert read["unreadable_lines"] == 1 and read["foreign_files"] == ["README.txt"] and read["open_segments"] == 1
    assert manifest["source"]["kept"]["events"] == len(events)


def test_too_few_test_queries_fail_naming_the_numbers_and_the_fix(tiny_data, tmp_path):
    searches, events, _, _ = traffic(tiny_data, 1000, new_share=0.0)
    write_log(tmp_path / "log", searches, events)
    with pytest.raises(DatasetError, match=r"0 test and \d+ train queries.*min_test_queries.*Fix:"):
        from_logs(tmp_path / "log", tiny_data, tmp_path / "dataset", settings())
    assert not (tmp_path / "dataset").exists()  # nothing half-written
    manifest = from_logs(
        tmp_path / "log", tiny_data, tmp_path / "dataset", settings(split_by="query", min_test_queries=1)
    )
    assert manifest["counts"]["test_queries"] > 0  # split_by still applies


def test_without_explored_searches_the_fix_is_named(tiny_data, tmp_path):
    searches, events, _, _ = traffic(tiny_data, 500, explore=0.0)
    write_log(tmp_path / "log", searches, events)
    with pytest.raises(DatasetError, match=r"0 explored searches.*serve.explore_share.*position_bias: none"):
        from_logs(tmp_path / "log", tiny_data, tmp_path / "dataset", settings())


def test_the_cli_builds_it_and_adds_it_to_dvc(tiny_data, tmp_path):
    """`smar data from-logs` inside a DVC project: the dataset and its pointer (the hash runs are tagged with)."""
    import subprocess
    import sys

    import yaml

    from smar.data.dataset import dvc_directory_md5

    searches, events, _, _ = traffic(tiny_data, 2000)
    write_log(tmp_path / "log", searches, events)
    project = tmp_path / "shop"
    project.mkdir()
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=project, check=True, capture_output=True)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"from_logs": {"min_test_queries": 2}}))
    smar = [sys.executable, "-m", "smar", "data", "from-logs", str(tmp_path / "log"), "--params", str(params)]
    done = subprocess.run(
        [*smar, "--catalog", str(tiny_data), "--out", "data-from-logs"], cwd=project, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "examination by position" in done.stdout and "git add" in done.stdout
    pointer = yaml.safe_load((project / "data-from-logs.dvc").read_text())
    assert pointer["outs"][0]["md5"] == dvc_directory_md5(project / "data-from-logs")

    missing = subprocess.run(
        [*smar, "--out", "x", "--catalog", str(tmp_path)], cwd=project, capture_output=True, text=True
    )
    assert missing.returncode == 1 and "items.parquet: missing" in missing.stderr and "Traceback" not in missing.stderr


def test_a_label_needs_its_rates_interval_to_reach_min_rate_not_its_rate_alone():
    """Two clicks in 16 impressions at a position examined a quarter of the time read as a rate of
    0.5, but on 4 examined impressions: at confidence 0.9 that is no label; 8 of 16 at the top is."""
    from smar.traffic.dataset import _labels

    shown = pd.DataFrame(
        [(f"S{n}", item, position, "red mug") for n in range(16) for item, position in (("top", 1), ("low", 3))],
        columns=["search_id", "item_id", "position", "text"],
    )
    clicks = [("top", n) for n in range(8)] + [("low", n) for n in range(2)]
    events = pd.DataFrame([(f"S{n}", item, "click") for item, n in clicks], columns=["search_id", "item_id", "event"])
    examination = {1: 1.0, 3: 0.25}
    as_such = _labels(events, shown, examination, settings(confidence=0.0))
    with_evidence = _labels(events, shown, examination, settings())
    assert set(as_such["item_id"]) == {"top", "low"} and set(with_evidence["item_id"]) == {"top"}
