"""`smar data from-logs`: the search log and the catalog become a dataset version in the data contract.

1. Read every search and event (smar.traffic.log.read_log); queries normalised (NFKC, case,
   spaces), identical texts merged into one query.
2. Bots out: a session (its session_id, else its hashed user, else the search alone) that
   searches faster than `bot_searches_per_minute`, or clicks more than `bot_clicks_per_search`
   results a search over at least three searches, with all its events.
3. Each event joined to its search: dropped, and counted by reason, when it repeats one
   already kept, names an unknown search or an item not in the catalog or not shown, or is
   stamped more than `clock_skew_seconds` before its search. Its position is the one the
   server logged (a client's own `position` is not trusted).
4. Position bias: a shopper examines the first results more, whatever they are. In explored
   searches (`serve.explore_share`: k of the top 2k in random order) what sits at a position no
   longer depends on how good it is, so their event rate by position, relative to position 1,
   estimates the examination probability of each position (a position-based click model,
   measured by randomisation as Joachims et al. 2017 do rather than fitted by EM, which needs
   the same pair shown at several positions and a model of relevance to get there).
5. Labels: for each (query, item) shown, its events per examined impression (clicks over
   expected clicks: the impressions with an event over the sum of their positions' examination,
   each at least 1 / `max_weight`). A rate measured on few examined impressions is mostly noise,
   and correction makes it louder: two stray clicks at position 8, examined 1 time in 8, read
   as a rate of 1. So a pair is relevant when the low end of the rate's Wilson interval at
   `confidence` (the examined impressions as trials) reaches `min_rate`, with events in at least
   `min_searches` searches; it is graded by its strongest event (`grades`). Without correction
   (`position_bias: none`) every impression counts as examined.
6. Splits: by time (the queries first searched in the latest `test_days` are the test split,
   the rest train and valid by a seeded hash), or as `split_by` says (smar.data.splits).

Nothing is written unless the whole build succeeds; dataset.json records the log's time range,
what was read and dropped and why, the examination estimate and the settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from pathlib import Path

from smar.core.config import FromLogsConfig
from smar.core.contract import BY_TIME, ITEMS, MANIFEST, QRELS, QUERIES
from smar.core.errors import DatasetError
from smar.core.intervals import wilson_low
from smar.core.paths import replace_on_success
from smar.data.importers import dataset_counts
from smar.data.splits import assign_splits, copy_catalog, hash_split
from smar.traffic.log import read_log

log = logging.getLogger(__name__)
MIN_EXPLORED = 50  # explored searches below which position bias cannot be estimated
BOT_MIN_SEARCHES = 3  # a session's clicks per search judge it from this many searches on


def normalise(text: str) -> str:
    """A query as the dataset keeps it: Unicode NFKC, lower case, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).lower().split())


def query_id(text: str) -> str:
    return "L" + hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def from_logs(log_dir: Path, catalog: Path, out: Path, settings: FromLogsConfig) -> dict:
    """Build the dataset at `out`; return its dataset.json content."""
    import pandas as pd

    log_dir, catalog, out = Path(log_dir), Path(catalog), Path(out)
    if not (catalog / ITEMS).is_file():
        raise DatasetError(f"{catalog / ITEMS}: missing. Fix: --catalog names a dataset directory (its items).")
    if out.resolve() in (log_dir.resolve(), catalog.resolve()):
        raise DatasetError(
            f"{out}: is the log or the catalog, and a build replaces the whole directory. Fix: --out NEW_DIR."
        )
    read = {kind: read_log(log_dir, kind) for kind in ("searches", "events")}
    searches, events = read["searches"].records, read["events"].records
    if searches.empty:
        raise DatasetError(
            f"{log_dir}: no searches logged (read {read['searches'].segments} segments). "
            f"Fix: point at the directory `serve.log_dir` names, with `serve.log: true`."
        )
    items = pd.read_parquet(catalog / ITEMS)
    report = {
        "read": {kind: _read_counts(found) for kind, found in read.items()},
        "dropped": {"searches": {}, "events": {}},
    }
    searches = _clean_searches(searches, report["dropped"]["searches"])
    searches, bot_searches = _without_bots(searches, events, settings)
    report["dropped"]["searches"]["bot"] = len(bot_searches)
    events, shown = _joined_events(
        events, searches, bot_searches, set(items["item_id"]), settings, report["dropped"]["events"]
    )
    examination = _examination(searches, events, shown, settings, log_dir)
    qrels = _labels(events, shown, examination, settings)
    qrels["split"] = qrels["query_id"].map(_splits(searches, qrels, items, settings))
    queries = qrels.drop_duplicates("query_id")[["query_id", "text"]].reset_index(drop=True)
    _check_test_split(qrels, settings, log_dir)

    manifest = {
        "name": out.name,
        "version": 1,
        "source": {
            "builder": "smar data from-logs",
            "log_dir": str(log_dir),
            "catalog": str(catalog),
            "log_range": [searches["time"].min().isoformat(), searches["time"].max().isoformat()],
            "settings": settings.model_dump(mode="json"),
            **report,
            "kept": {"searches": len(searches), "events": len(events)},
            "examination": {str(position): round(value, 4) for position, value in examination.items()},
        },
        "counts": dataset_counts(items, queries, qrels),
    }
    with replace_on_success(out) as scratch:
        copy_catalog(catalog, scratch)
        queries.to_parquet(scratch / QUERIES, index=False)
        qrels[["query_id", "item_id", "label", "split"]].to_parquet(scratch / QRELS, index=False)
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info(
        "from-logs: %d searches, %d events kept -> %d queries, %d qrels (%s)",
        len(searches),
        len(events),
        len(queries),
        len(qrels),
        ", ".join(f"{k} {v}" for k, v in manifest["counts"].items() if k.endswith("_queries")),
    )
    return manifest


def _read_counts(found) -> dict:
    return {
        "records": len(found.records),
        "segments": found.segments,
        "open_segments": found.open_segments,
        "unreadable_lines": found.unreadable_lines,
        "foreign_files": found.foreign_files,
    }


def _clean_searches(searches, dropped: dict):
    """One row per search id, with its normalised query and a session key."""
    repeated = searches["search_id"].isna() | searches.duplicated("search_id")
    dropped["repeated_search_id"] = int(repeated.sum())
    searches = searches[~repeated].copy()
    searches["text"] = searches["query"].fillna("").map(normalise)
    blank = searches["text"] == ""
    dropped["blank_query"] = int(blank.sum())
    searches = searches[~blank]
    searches["session"] = searches["session_id"].fillna(searches["user_hash"]).fillna(searches["search_id"])
    return searches.reset_index(drop=True)


def _without_bots(searches, events, settings: FromLogsConfig):
    """The searches of sessions that behave like people, and the ids of the others' searches."""
    clicks = events[events["event"] == "click"].drop_duplicates(["search_id", "item_id"]).groupby("search_id").size()
    sessions = (
        searches.assign(clicks=searches["search_id"].map(clicks).fillna(0))
        .groupby("session")
        .agg(searches=("search_id", "size"), clicks=("clicks", "sum"), first=("time", "min"), last=("time", "max"))
    )
    minutes = ((sessions["last"] - sessions["first"]).dt.total_seconds() / 60).clip(lower=1.0)
    bot = (sessions["searches"] / minutes > settings.bot_searches_per_minute) | (
        (sessions["searches"] >= BOT_MIN_SEARCHES)
        & (sessions["clicks"] / sessions["searches"] > settings.bot_clicks_per_search)
    )
    is_bot = searches["session"].map(bot).astype(bool)
    return searches[~is_bot].reset_index(drop=True), set(searches.loc[is_bot, "search_id"])


def _joined_events(events, searches, bot_searches: set, catalog_items: set, settings: FromLogsConfig, dropped: dict):
    """Events that belong to a kept search and an item it showed, with that item's position and query."""
    import pandas as pd

    def drop(mask, reason: str):
        nonlocal events
        dropped[reason] = int(mask.sum())
        events = events[~mask]

    shown = searches[["search_id", "item_ids", "time", "text"]].explode("item_ids").dropna(subset="item_ids")
    shown = shown.rename(columns={"item_ids": "item_id", "time": "search_time"})
    shown["position"] = shown.groupby("search_id").cumcount() + 1
    drop(events.duplicated(["search_id", "item_id", "event"]), "repeated")
    drop(events["search_id"].isin(bot_searches), "bot")
    drop(~events["search_id"].isin(searches["search_id"]), "unknown_search")
    drop(~events["item_id"].isin(catalog_items), "item_not_in_catalog")
    events = events.drop(columns=["position"]).merge(shown, on=["search_id", "item_id"], how="left")
    drop(events["position"].isna(), "item_not_shown")
    drop(
        events["time"] < events["search_time"] - pd.Timedelta(seconds=settings.clock_skew_seconds), "before_its_search"
    )
    return events.assign(position=events["position"].astype("int64")).reset_index(drop=True), shown


def _examination(searches, events, shown, settings: FromLogsConfig, log_dir: Path) -> dict[int, float]:
    """{position: examination probability relative to position 1}, from the explored searches."""
    positions = range(1, int(shown["position"].max()) + 1) if len(shown) else range(1, 2)
    if settings.position_bias == "none":
        return dict.fromkeys(positions, 1.0)
    explored = set(searches.loc[searches["explored"].astype(bool), "search_id"])
    if len(explored) < MIN_EXPLORED:
        raise DatasetError(
            f"{log_dir}: {len(explored)} explored searches, too few to estimate position bias (at least "
            f"{MIN_EXPLORED}). Fix: serve with serve.explore_share > 0 for longer, or from_logs.position_bias: none."
        )
    impressions = shown[shown["search_id"].isin(explored)].groupby("position").size()
    acted = events[events["search_id"].isin(explored)].drop_duplicates(["search_id", "item_id"])
    rate = (acted.groupby("position").size() / impressions).reindex(list(positions)).fillna(0.0)
    if rate.get(1, 0.0) <= 0:
        raise DatasetError(
            f"{log_dir}: no event at position 1 in {len(explored)} explored searches, so examination cannot be "
            f"estimated. Fix: log more searches, or from_logs.position_bias: none."
        )
    floor = 1.0 / settings.max_weight
    return {position: float(min(1.0, max(floor, rate[position] / rate[1]))) for position in positions}


def _labels(events, shown, examination: dict[int, float], settings: FromLogsConfig):
    """qrels (query text, item_id, label, rate): the pairs whose events per examined impression reach
    min_rate at `confidence`, in at least min_searches searches."""
    grade = events.assign(grade=events["event"].map(settings.grades)).groupby(["search_id", "item_id"])["grade"].max()
    impressions = shown.join(grade, on=["search_id", "item_id"])
    impressions["examined"] = impressions["position"].map(examination)
    pairs = impressions.groupby(["text", "item_id"]).agg(
        examined=("examined", "sum"), label=("grade", "max"), searches=("grade", "count")
    )
    pairs["rate"] = wilson_low(pairs["searches"], pairs["examined"], settings.confidence)
    relevant = pairs[(pairs["rate"] >= settings.min_rate) & (pairs["searches"] >= settings.min_searches)].reset_index()
    return relevant.assign(query_id=relevant["text"].map(query_id), label=relevant["label"].astype("int64"))


def _splits(searches, qrels, items, settings: FromLogsConfig) -> dict[str, str]:
    """{query_id: split}: by time (first searched in the last test_days: test), or as split_by says."""
    if settings.split_by != BY_TIME:
        return assign_splits(
            qrels, items, settings.split_by, settings.seed, settings.valid_fraction, settings.test_fraction, ITEMS
        )
    import pandas as pd

    first = searches.groupby("text")["time"].min()
    cutoff = searches["time"].max() - pd.Timedelta(days=settings.test_days)
    splits = {}
    for text in qrels["text"].unique():
        qid = query_id(text)
        splits[qid] = "test" if first[text] > cutoff else hash_split(qid, settings.seed, settings.valid_fraction, 0.0)
    return splits


def _check_test_split(qrels, settings: FromLogsConfig, log_dir: Path) -> None:
    test = qrels.loc[qrels["split"] == "test", "query_id"].nunique()
    train = qrels.loc[qrels["split"] == "train", "query_id"].nunique()
    if test < settings.min_test_queries or train == 0:
        hint = (
            f"from_logs.test_days ({settings.test_days}) covers the new queries of the last days"
            if settings.split_by == BY_TIME
            else f"from_logs.test_fraction is {settings.test_fraction}"
        )
        raise DatasetError(
            f"{log_dir}: {test} test and {train} train queries with a relevant item; at least "
            f"{settings.min_test_queries} test (from_logs.min_test_queries) and one train query are needed ({hint}). "
            f"Fix: collect more searches, change test_days or split_by, or lower min_test_queries."
        )
