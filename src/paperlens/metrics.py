"""Prometheus metrics of a server: ``GET /metrics`` in the text format (an admin key when the server has keys).

Each app has its own registry (tests and embedders make many apps in one process). Exported:
- ``paperlens_http_requests_total{route, method, status}`` and ``paperlens_http_request_duration_seconds``
  by route template ('/papers/{paper_id:path}', not the path asked for; 'unmatched' for none);
- ``paperlens_encode_seconds`` and ``paperlens_encoded_texts_total``: time in the encoder (queries
  and papers) in this process, told by the encoder (``Library.observe_encoding``);
- read at scrape time from the library and its store: ``paperlens_papers``, ``paperlens_index_generation``,
  ``paperlens_write_groups_total`` and ``paperlens_grouped_writes_total`` (group commits, commits.py),
  and the harvests recorded in the store by 'paperlens harvest', which runs in another process:
  ``paperlens_harvest_runs_total{outcome}``, ``paperlens_harvest_records_total{result}``,
  ``paperlens_harvest_last_success_timestamp_seconds``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api_deps import WriteAccess
from .library import Library

# Finer from 50 to 250 ms, where a write's p99 under load falls (benchmarks/load.py reads them).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ENCODE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)


class LibraryCollector(Collector):
    """What the library and its store hold, read at each scrape (harvests are written by other processes)."""

    def __init__(self, library: Callable[[], Library | None]):
        self.library = library

    def collect(self) -> Iterator[Metric]:
        library = self.library()
        if library is None:  # scraped before start-up finished
            return
        yield GaugeMetricFamily("paperlens_papers", "papers this server searches", value=len(library))
        yield GaugeMetricFamily("paperlens_index_generation", "writes to the index's store this server has caught up with "
                                "(each ingest, delete, repair)", value=library.generation)
        commits = getattr(library, "commits", None)  # a sharded library's shards commit their own writes
        if commits is not None:
            yield CounterMetricFamily("paperlens_write_groups", "group commits of ingests and deletes in this process "
                                      "(commits.py)", value=commits.groups)
            yield CounterMetricFamily("paperlens_grouped_writes", "ingests and deletes those group commits held", value=commits.writes)
        labels = ["source", "set", "prefix"]
        runs = CounterMetricFamily("paperlens_harvest_runs", "OAI-PMH harvest runs recorded in this index", labels=[*labels, "outcome"])
        records = CounterMetricFamily("paperlens_harvest_records", "records of OAI-PMH harvests by what they did to the index",
                                      labels=[*labels, "result"])
        last = GaugeMetricFamily("paperlens_harvest_last_success_timestamp_seconds", "end of the last complete harvest (Unix time)",
                                 labels=labels)
        for totals in library.store.harvests.totals():
            key = [totals.source, totals.set_spec, totals.prefix]
            runs.add_metric([*key, "ok"], totals.runs_ok)
            runs.add_metric([*key, "failed"], totals.runs_failed)
            for result in ("added", "updated", "deleted", "unchanged"):
                records.add_metric([*key, result], getattr(totals, result))
            if totals.last_success:
                last.add_metric(key, dt.datetime.fromisoformat(totals.last_success).timestamp())
        yield from (runs, records, last)


class Metrics:
    """One app's registry and instruments."""

    def __init__(self, library: Callable[[], Library | None]):
        self.registry = CollectorRegistry()
        self.requests = Counter("paperlens_http_requests", "HTTP requests answered, by route template, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("paperlens_http_request_duration_seconds", "time to answer an HTTP request, by route template",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.encode_seconds = Histogram("paperlens_encode_seconds", "time of one encoder call (queries and papers) in this process",
                                        buckets=ENCODE_BUCKETS, registry=self.registry)
        self.encoded_texts = Counter("paperlens_encoded_texts", "texts encoded in this process", registry=self.registry)
        self.registry.register(LibraryCollector(library))

    def observe_encode(self, texts: int, seconds: float) -> None:
        self.encode_seconds.observe(seconds)
        self.encoded_texts.inc(texts)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware: every answer counted by the template of the route that took it (the router
    leaves it in ``scope['route']``), so '/papers/2401.00001' and '/papers/2402.00002' are one series."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(route, scope["method"], status[0], time.perf_counter() - start)


def add_metrics(app: FastAPI) -> Metrics:
    """The /metrics route and the request middleware; ``app.state.metrics`` for the lifespan, which
    gives the encoder's timings to it (``Library.observe_encoding``)."""
    metrics = Metrics(lambda: getattr(app.state, "library", None))
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/metrics", response_class=Response, dependencies=WriteAccess, tags=["operations"],
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    def get_metrics() -> Response:
        """Requests, latency, encoder time, papers, index generation and harvests, for Prometheus.
        Needs an admin X-API-Key when the server has keys."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return metrics
