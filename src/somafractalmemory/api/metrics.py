"""Prometheus metrics of one API app, on its own ``CollectorRegistry``.

Two apps in one process (tests) never share counters. Labels are bounded:
``route`` is the route *template* (``/memories/{coord}``), never the raw
path; requests that match no route are counted under ``<unmatched>``.

With several worker processes, each has its own registry; set
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) to have
``/metrics`` aggregate every worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "ApiMetrics"]

CONTENT_TYPE: str = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """Request counts and latency by route and status; store/recall counts and latency."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "soma_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "soma_http_request_duration_seconds",
            "HTTP request latency by method, route template and status",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("soma_http_requests_in_flight", "HTTP requests being served", registry=r)
        self.operations = Counter(
            "soma_operations",
            "Core operations (store, store_bulk, remember, recall, ...) by outcome",
            ["operation", "outcome"],
            registry=r,
        )
        self.operation_latency = Histogram(
            "soma_operation_duration_seconds",
            "Core operation latency",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.memories_stored = Counter("soma_memories_stored", "Memories written through the API", registry=r)
        self.store_batch_size = Histogram(
            "soma_api_store_batch_size",
            "Stores written together in one batch (api/combiner.py)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.rate_limited = Counter("soma_rate_limited", "Requests refused by the rate limit", registry=r)
        self.rate_limit_errors = Counter(
            "soma_rate_limit_backend_errors",
            "Rate-limit checks skipped because its backend did not answer (requests were let through)",
            registry=r,
        )
        # labelled children, looked up once per label set (``labels()`` takes a
        # lock and rebuilds its key on every call); as bounded as the labels
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._operation_children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            code = str(status)
            children = self.requests.labels(method, route, code), self.latency.labels(method, route, code)
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    @contextmanager
    def operation(self, name: str) -> Iterator[None]:
        """Time a core call and count it as ``ok`` or ``error``."""
        started = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "ok"
        finally:
            self.observe_operation(name, outcome, time.perf_counter() - started)

    def observe_operation(self, name: str, outcome: str, seconds: float) -> None:
        key = (name, outcome)
        children = self._operation_children.get(key)
        if children is None:
            children = self.operation_latency.labels(name), self.operations.labels(name, outcome)
            self._operation_children[key] = children
        children[0].observe(seconds)
        children[1].inc()

    def render(self) -> bytes:
        """The exposition text (all workers' when in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))
