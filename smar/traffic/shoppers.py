"""Simulated shoppers: real HTTP searches and events against a running `smar serve`, from a
catalog whose true relevance is known, to test and measure the loop without a shop.

A position-based click model: a shopper examines position p with probability
`examination(p) = 1 / p ** eta`; an examined result is clicked with probability
`click_relevant` if the dataset's qrels call it relevant to the query, else `click_irrelevant`;
a clicked relevant result is added to the cart with probability `cart`, and a cart bought with
`purchase` (irrelevant ones a tenth as often). Shoppers come in sessions of one to four searches.
A share of searches (`bot_share`) comes from a few bot sessions that search without pause and
click nearly everything; a share of event posts (`repeat_share`) is sent twice, as retrying
clients do. Every draw comes from `seed` and the search's number, so a run is reproducible
given the server's rankings.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from smar.core.contract import QRELS, QUERIES
from smar.core.errors import DatasetError


@dataclass(frozen=True)
class Shoppers:
    eta: float = 1.0  # examination(p) = 1 / p ** eta
    click_relevant: float = 0.7
    click_irrelevant: float = 0.05
    cart: float = 0.3
    purchase: float = 0.5
    bot_share: float = 0.05
    bot_sessions: int = 3
    repeat_share: float = 0.02

    def examination(self, position: int) -> float:
        return 1.0 / position**self.eta


def plan_sessions(query_ids: list[str], searches: int, shoppers: Shoppers, rng: random.Random) -> list[list]:
    """Sessions as lists of (search number, query id, is_bot)."""
    bots = round(searches * shoppers.bot_share)
    sessions: list[list] = [[] for _ in range(shoppers.bot_sessions if bots else 0)]
    for number in range(bots):
        sessions[number % len(sessions)].append((number, rng.choice(query_ids), True))
    number = bots
    while number < searches:
        length = min(rng.randint(1, 4), searches - number)
        sessions.append([(number + i, rng.choice(query_ids), False) for i in range(length)])
        number += length
    rng.shuffle(sessions)
    return sessions


def shopper_events(results: list[str], relevant: set[str], is_bot: bool, shoppers: Shoppers, rng: random.Random):
    """What one shopper does with one search's results: [(item_id, event, position)]."""
    events = []
    for position, item in enumerate(results, start=1):
        if is_bot:
            if rng.random() < 0.9:
                events.append((item, "click", position))
            continue
        if rng.random() >= shoppers.examination(position):
            continue
        good = item in relevant
        if rng.random() < (shoppers.click_relevant if good else shoppers.click_irrelevant):
            events.append((item, "click", position))
            scale = 1.0 if good else 0.1
            if rng.random() < shoppers.cart * scale:
                events.append((item, "add_to_cart", position))
                if rng.random() < shoppers.purchase:
                    events.append((item, "purchase", position))
    return events


def simulate(
    url: str,
    data_dir: Path,
    searches: int,
    *,
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "valid"),
    k: int = 10,
    concurrency: int = 8,
    shoppers: Shoppers = Shoppers(),
    events_url: str | None = None,
) -> dict:
    """Send `searches` searches (queries of `splits`, so the test split stays unseen) to the service
    at `url`, and their events there too or to `events_url` (another server); return what was sent."""
    import httpx
    import pandas as pd

    data_dir = Path(data_dir)
    qrels = pd.read_parquet(data_dir / QRELS)
    texts = pd.read_parquet(data_dir / QUERIES).set_index("query_id")["text"]
    relevant = qrels.groupby("query_id")["item_id"].agg(set).to_dict()
    query_ids = sorted(qrels.loc[qrels["split"].isin(splits), "query_id"].unique())
    if not query_ids:
        raise DatasetError(
            f"{data_dir / QRELS}: no queries in the splits {', '.join(splits)}. Fix: --data names a dataset."
        )
    sessions = plan_sessions(query_ids, searches, shoppers, random.Random(seed))
    sent: Counter = Counter()
    lock = threading.Lock()
    local, opened = threading.local(), []

    def clients() -> tuple:
        """This thread's clients, kept across its sessions: an httpx.Client costs milliseconds of CPU to
        make, more than a search, and its connections are then reused."""
        if not hasattr(local, "pair"):
            local.pair = httpx.Client(base_url=url, timeout=60), httpx.Client(base_url=events_url or url, timeout=60)
            with lock:
                opened.extend(local.pair)
        return local.pair

    def run_session(session_number: int, session: list) -> None:
        client, sink = clients()
        for number, qid, is_bot in session:
            rng = random.Random(f"{seed}:{number}")
            body = {"query": texts[qid], "k": k, "session_id": f"{'bot' if is_bot else 's'}-{session_number}"}
            answer = client.post("/search", json=body | {"user_id": f"user-{session_number}"})
            answer.raise_for_status()
            answer = answer.json()
            results = [hit["item_id"] for hit in answer["results"]]
            events = [
                {"search_id": answer["search_id"], "item_id": item, "event": event, "position": position}
                for item, event, position in shopper_events(results, relevant.get(qid, set()), is_bot, shoppers, rng)
            ]
            repeat = bool(events) and rng.random() < shoppers.repeat_share
            for _ in range(1 + repeat if events else 0):
                sink.post("/events", json=events).raise_for_status()
            with lock:
                sent.update({"searches": 1, "bot_searches": int(is_bot), "repeated_events": len(events) * repeat})
                sent.update(event["event"] for event in events)

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            for done in [pool.submit(run_session, n, session) for n, session in enumerate(sessions)]:
                done.result()
    finally:
        for client in opened:
            client.close()
    seconds = time.perf_counter() - started
    return dict(sent) | {"sessions": len(sessions), "seconds": round(seconds, 2), "shoppers": asdict(shoppers)}
