"""What a team watches: `smar serve`'s metrics, at GET /metrics in Prometheus' text format.

Named as serving systems name theirs (Triton's and TEI's request, queue and inference
durations), in seconds, `smar_` first; every name, type and label is listed in
docs/serving.md#metrics (a test checks each one listed there is exported).

What a request does costs two counter and histogram updates (a search three more, in the
batcher); everything about the model, the registry and the log is read when /metrics is
scraped, never on a search.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from smar.traffic.interleaving import SIDES

SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServingMetrics:
    """One service's metrics, in a registry of its own (several services in one process stay apart)."""

    def __init__(self, follower, search_log=None):
        self.registry = CollectorRegistry()
        histogram = {"registry": self.registry, "buckets": SECONDS}
        self.requests = Counter(
            "smar_requests", "Requests answered, by route and status.", ["route", "status"], registry=self.registry
        )
        self.request_duration = Histogram(
            "smar_request_duration_seconds", "Whole request, first byte in to last byte out.", ["route"], **histogram
        )
        self.queue_duration = Histogram("smar_queue_duration_seconds", "A search's wait for its batch.", **histogram)
        self.encode_duration = Histogram(
            "smar_encode_duration_seconds", "A batch's query encoding and routing.", **histogram
        )
        self.search_duration = Histogram("smar_search_duration_seconds", "A batch's index search.", **histogram)
        self.batch_size = Histogram(
            "smar_batch_size", "Searches answered together.", registry=self.registry, buckets=BATCH_SIZES
        )
        self.experiment_searches = Counter(
            "smar_experiment_searches", "Searches answered by interleaving.", registry=self.registry
        )
        self.experiment_impressions = Counter(
            "smar_experiment_impressions", "Interleaved results shown, by side.", ["side"], registry=self.registry
        )
        self.experiment_credits = Counter(
            "smar_experiment_credits", "Events on interleaved results, by side.", ["side"], registry=self.registry
        )
        self.shadow_overlap = Histogram(
            "smar_shadow_overlap",
            "Share of the champion's top k the challenger's top k holds, per shadowed search.",
            registry=self.registry,
            buckets=tuple(n / 10 for n in range(11)),
        )
        for side in SIDES:  # exported from the start, at 0
            self.experiment_impressions.labels(side)
            self.experiment_credits.labels(side)
        self.registry.register(_ServiceState(follower, search_log))

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Instrumented:
    """ASGI middleware: every HTTP request counted and timed by its route template
    (`app.add_middleware(Instrumented, metrics=...)`)."""

    def __init__(self, app, metrics: ServingMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # a template: /images/{item_id}
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.request_duration.labels(route).observe(time.perf_counter() - started)


class _ServiceState:
    """The model, registry and log figures, read at scrape time."""

    def __init__(self, follower, search_log):
        self.follower, self.search_log = follower, search_log

    def collect(self):
        follower, model = self.follower, self.follower.current
        labels = ["model_name", "alias", "version"]
        info = GaugeMetricFamily("smar_model_info", "The version serving now.", labels=labels)
        items = GaugeMetricFamily("smar_index_items", "Items in each index the version serves.", labels=["view"])
        if model is not None:
            info.add_metric([follower.model_name, follower.alias, model.version], 1)
            for view, index in model.retriever.indexes.items():
                items.add_metric([view], index.ntotal)
        yield info
        yield items
        yield CounterMetricFamily(
            "smar_registry_poll_failures", "Registry polls that failed.", value=follower.poll_failures
        )
        yield CounterMetricFamily(
            "smar_model_load_failures", "Versions that failed to load.", value=follower.load_failures
        )
        written = CounterMetricFamily("smar_log_records", "Records written to the search log.", labels=["kind"])
        dropped = CounterMetricFamily("smar_log_dropped", "Records the search log could not keep.", labels=["kind"])
        for kind, writer in (self.search_log.writers if self.search_log else {}).items():
            written.add_metric([kind], writer.written)
            dropped.add_metric([kind], writer.dropped)
        yield written
        yield dropped
