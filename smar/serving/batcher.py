"""Searching concurrent requests' queries together, in one worker thread.

Queries from concurrent requests are encoded together: one worker thread takes whatever
is waiting (up to `serve.max_batch`) and searches it as one batch. The model is only ever
used from that thread.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

from smar.serving.follower import AliasFollower

if TYPE_CHECKING:
    from smar.serving.metrics import ServingMetrics


class Batcher:
    """One worker thread answers queued searches in batches, with the model current at batch start."""

    def __init__(self, follower: AliasFollower, max_batch: int, metrics: ServingMetrics | None = None):
        self.follower, self.max_batch, self.metrics = follower, max_batch, metrics
        self.requests: queue.Queue = queue.Queue()
        threading.Thread(target=self._work, name="search-batcher", daemon=True).start()

    def submit(self, query: str, k: int) -> Future:
        future: Future = Future()
        self.requests.put((query, k, future, time.perf_counter()))
        return future

    def _work(self) -> None:
        while True:
            batch = [self.requests.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.requests.get_nowait())
                except queue.Empty:
                    break
            model = self.follower.current
            started = time.perf_counter()
            try:
                vectors, views = model.retriever.encode([query for query, *_ in batch])
                encoded = time.perf_counter()
                hits = model.retriever.search_encoded(vectors, views, max(k for _, k, *_ in batch))
                searched = time.perf_counter()
            except Exception as error:  # reported to each waiting request; the worker lives on
                for _, _, future, _ in batch:
                    future.set_exception(error)
                continue
            for row, (_, k, future, _) in enumerate(batch):
                future.set_result((model, hits.item_ids[row][:k], hits.scores[row][:k], hits.views[row]))
            if self.metrics is not None:  # once answered
                self._measured(batch, started, encoded, searched)

    def _measured(self, batch: list, started: float, encoded: float, searched: float) -> None:
        metrics = self.metrics
        for *_, queued in batch:
            metrics.queue_duration.observe(started - queued)
        metrics.encode_duration.observe(encoded - started)
        metrics.search_duration.observe(searched - encoded)
        metrics.batch_size.observe(len(batch))
