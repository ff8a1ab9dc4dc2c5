"""Searching concurrent requests' queries together, in one worker thread.

Queries from concurrent requests are encoded together: one worker thread takes whatever
is waiting (up to `serve.max_batch`) and searches it as one batch. The model is only ever
used from that thread.
"""

import queue
import threading
from concurrent.futures import Future

from smar.serving.follower import AliasFollower


class Batcher:
    """One worker thread answers queued searches in batches, with the model current at batch start."""

    def __init__(self, follower: AliasFollower, max_batch: int):
        self.follower, self.max_batch = follower, max_batch
        self.requests: queue.Queue = queue.Queue()
        threading.Thread(target=self._work, name="search-batcher", daemon=True).start()

    def submit(self, query: str, k: int) -> Future:
        future: Future = Future()
        self.requests.put((query, k, future))
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
            try:
                hits = model.retriever.search([query for query, _, _ in batch], max(k for _, k, _ in batch))
            except Exception as error:  # reported to each waiting request; the worker lives on
                for _, _, future in batch:
                    future.set_exception(error)
                continue
            for row, (_, k, future) in enumerate(batch):
                future.set_result((model, hits.item_ids[row][:k], hits.scores[row][:k], hits.views[row]))
