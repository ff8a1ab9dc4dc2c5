"""Champion and challenger on live traffic: a share of searches answered by team-draft interleaving,
and a share ranked by the challenger unseen (shadow).

With `serve.experiment_share` above 0, `smar serve` also follows the alias `challenger` (which
registration sets on every new version) and answers that share of searches with both
rankings interleaved (smar.traffic.interleaving): each result is tagged, in the search log,
with the side that picked it (`sides`, and `challenger_version`). Shoppers' events credit the
side whose item they acted on; `smar registry compare` reads the log and says which side
shoppers prefer, and how sure that is. The challenger is loaded beside the champion (twice
the serving memory) and answered through a batcher of its own. With `serve.shadow_share`, that
share of the other searches is ranked by the challenger too, after the champion has answered,
never shown: its top k and their overlap with the champion's go to the log (kind `shadow`).
And for the people who look before they trust, POST /compare (and the search page) shows both
sides' results for one query, unlogged, with `serve.side_by_side` or either share above 0.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict

from smar.serving.batcher import Batcher
from smar.serving.follower import AliasFollower
from smar.traffic.interleaving import SIDES, team_draft

RECENT_SEARCHES = 100_000  # interleaved searches whose sides are kept in memory, to credit their events


class Experiment:
    def __init__(
        self,
        challenger: AliasFollower,
        share: float,
        max_batch: int,
        metrics=None,
        shadow_share: float = 0.0,
        search_log=None,
    ):
        self.challenger, self.share, self.metrics = challenger, share, metrics
        self.shadow_share, self.search_log = shadow_share, search_log
        self.batcher = Batcher(challenger, max_batch)
        self.rng = random.Random()
        self._sides: OrderedDict[str, list[str]] = OrderedDict()

    def wants(self, champion_version: str) -> bool:
        """Whether this search is interleaved: a share of them, while a challenger other than the champion is loaded."""
        return self._draw(self.share, champion_version)

    def shadows(self, champion_version: str) -> bool:
        """Whether the challenger also ranks this search, unseen."""
        return self._draw(self.shadow_share, champion_version)

    def _draw(self, share: float, champion_version: str) -> bool:
        rival = self.challenger.current
        return rival is not None and rival.version != champion_version and self.rng.random() < share

    def shadow(self, search_id: str, query: str, shown: list[str], champion_version: str, record: dict) -> None:
        """The challenger ranks `query` in its own batcher, off the request's path; its top k and
        their overlap with the champion's (`shown`) go to the log's shadow records and /metrics."""
        k = len(shown)

        def done(answer) -> None:
            if answer.exception() is not None or not k:
                return
            rival, item_ids, scores, _ = answer.result()
            overlap = len(set(item_ids) & set(shown)) / k
            if self.metrics is not None:
                self.metrics.shadow_overlap.observe(overlap)
            if self.search_log is not None:
                self.search_log.shadow(
                    record
                    | {
                        "search_id": search_id,
                        "champion_version": champion_version,
                        "challenger_version": rival.version,
                        "item_ids": list(item_ids),
                        "scores": [float(score) for score in scores],
                        "overlap": overlap,
                    }
                )

        self.batcher.submit(query, k).add_done_callback(done)

    async def interleave(self, champion_answer, query: str, k: int):
        """The champion's answer (a batcher future) and the challenger's, team-drafted into k results:
        (champion model, its index view, challenger version, item ids, their scores, their sides)."""
        (model, first, first_scores, view), (rival, second, second_scores, _) = await asyncio.gather(
            asyncio.wrap_future(champion_answer), asyncio.wrap_future(self.batcher.submit(query, k))
        )
        item_ids, sides = team_draft(first, second, k, self.rng)
        scores = dict(zip(SIDES, (dict(zip(first, first_scores)), dict(zip(second, second_scores)))))
        return model, view, rival.version, item_ids, [scores[side][item] for item, side in zip(item_ids, sides)], sides

    async def side_by_side(self, champion_answer, query: str, k: int) -> dict:
        """The champion's answer (a batcher future) and the challenger's top k, each side as
        (model, item ids, scores, index view), by side."""
        answers = await asyncio.gather(
            asyncio.wrap_future(champion_answer), asyncio.wrap_future(self.batcher.submit(query, k))
        )
        return dict(zip(SIDES, answers))

    def remember(self, search_id: str, sides: list[str]) -> None:
        self._sides[search_id] = sides
        if len(self._sides) > RECENT_SEARCHES:
            self._sides.popitem(last=False)
        if self.metrics is not None:
            self.metrics.experiment_searches.inc()
            for side in sides:
                self.metrics.experiment_impressions.labels(side).inc()

    def credit(self, search_id: str, position: int | None) -> None:
        """An event on an interleaved search: credit the side whose item sat at `position`."""
        sides = self._sides.get(search_id)
        if sides is not None and position is not None and 1 <= position <= len(sides) and self.metrics is not None:
            self.metrics.experiment_credits.labels(sides[position - 1]).inc()
