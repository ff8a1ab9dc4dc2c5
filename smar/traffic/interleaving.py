"""Team-draft interleaving: two rankings shown as one, and the shoppers' clicks say which is better.

Radlinski, Kurup and Joachims, *How Does Clickthrough Data Reflect Retrieval Quality?* (CIKM
2008): like two captains picking teams, the ranking with fewer picks so far (a coin decides
ties) adds its best item not yet shown, and the item is tagged with the side that picked it.
A shopper sees one list in which each side's items hold the positions its own ranking would
give them, so position bias favours neither side; a search whose clicks land more on one
side's items is a win for that side. Over many searches, the share of decided searches won by
a side estimates how often shoppers prefer it, far more sensitively than comparing two
sides' click rates in an A/B split (interleaving needs 10 to 100 times fewer searches).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SIDES = ("champion", "challenger")


def team_draft(first: Sequence[str], second: Sequence[str], k: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """Interleave `first` (side SIDES[0]) and `second` (SIDES[1]) into k items: (items, the side of each)."""
    shown: list[str] = []
    sides: list[str] = []
    taken: set[str] = set()
    picks = {SIDES[0]: 0, SIDES[1]: 0}
    rankings = {SIDES[0]: list(first), SIDES[1]: list(second)}
    cursor = {SIDES[0]: 0, SIDES[1]: 0}

    def next_of(side: str) -> str | None:
        ranking = rankings[side]
        while cursor[side] < len(ranking) and ranking[cursor[side]] in taken:
            cursor[side] += 1
        return ranking[cursor[side]] if cursor[side] < len(ranking) else None

    while len(shown) < k:
        a, b = next_of(SIDES[0]), next_of(SIDES[1])
        if a is None and b is None:
            break
        if b is None or (
            a is not None
            and (picks[SIDES[0]] < picks[SIDES[1]] or (picks[SIDES[0]] == picks[SIDES[1]] and rng.random() < 0.5))
        ):
            side, item = SIDES[0], a
        else:
            side, item = SIDES[1], b
        shown.append(item)
        sides.append(side)
        taken.add(item)
        picks[side] += 1
    return shown, sides


def credit(sides: Sequence[str], clicked_positions: Iterable[int]) -> str | None:
    """The side a search's clicks (1-based positions) favour: the side whose items got more of
    them, or None for a tie (no clicks, or as many on each side)."""
    counts = {side: 0 for side in SIDES}
    for position in set(clicked_positions):
        if 1 <= position <= len(sides):
            counts[sides[position - 1]] += 1
    if counts[SIDES[0]] == counts[SIDES[1]]:
        return None
    return max(counts, key=counts.get)


@dataclass(frozen=True)
class Preference:
    """Interleaved searches won by each side, and how sure the preference for the challenger is."""

    searches: int  # interleaved searches
    wins: int  # decided for the challenger
    losses: int  # decided for the champion
    ties: int  # clicks on neither side more (or no clicks)
    share: float | None  # wins / (wins + losses): 0.5 is no preference
    low: float | None  # its Wilson score interval at `confidence`
    high: float | None
    confidence: float

    @property
    def verdict(self) -> str:
        if self.low is not None and self.low > 0.5:
            return "challenger better"
        if self.high is not None and self.high < 0.5:
            return "challenger worse"
        return "not distinguishable"


def preference(outcomes: Iterable[str | None], confidence: float = 0.95) -> Preference:
    """The challenger's share of decided searches (each outcome a side, or None for a tie), with
    a Wilson interval: a sign test over the searches that clicks decided."""
    outcomes = list(outcomes)
    wins = sum(outcome == SIDES[1] for outcome in outcomes)
    losses = sum(outcome == SIDES[0] for outcome in outcomes)
    decided = wins + losses
    if not decided:
        return Preference(len(outcomes), 0, 0, len(outcomes), None, None, None, confidence)
    from smar.core.intervals import wilson

    low, high = wilson(wins, decided, confidence)
    return Preference(len(outcomes), wins, losses, len(outcomes) - decided, wins / decided, low, high, confidence)


def logged_outcomes(log_dir) -> dict[tuple[str, str, str], list[str | None]]:
    """Every interleaved search in a search log, in time order, credited by the events on it (any
    kind: a click, a cart or a purchase on an item counts once), by (model name, champion version,
    challenger version). An event's position is where the server showed its item, whatever the client said."""
    from collections import defaultdict
    from pathlib import Path

    from smar.traffic.log import read_log

    searches = read_log(Path(log_dir), "searches").records
    events = read_log(Path(log_dir), "events").records
    acted = events.groupby("search_id")["item_id"].agg(set).to_dict() if len(events) else {}
    outcomes: dict[tuple[str, str, str], list[str | None]] = defaultdict(list)
    interleaved = searches[searches["challenger_version"].notna()].sort_values("time", kind="stable")
    for search in interleaved.itertuples():
        items = acted.get(search.search_id, set())
        positions = [position for position, item in enumerate(search.item_ids, start=1) if item in items]
        key = (search.model_name, str(search.model_version), str(search.challenger_version))
        outcomes[key].append(credit(list(search.sides), positions))
    return dict(outcomes)
