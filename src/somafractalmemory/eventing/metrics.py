"""Prometheus metrics of the event pipeline (workers and the outbox relay).

Each ``PipelineMetrics`` has its own registry, so two workers in one process
(tests) never share counters; ``serve(port)`` exposes it over HTTP
(``soma worker --metrics-port``, default 8001). ``value(name)`` reads a
sample back, for tests and burst-mode reports.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["PipelineMetrics"]

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class PipelineMetrics:
    """Counters, gauges and histograms of one worker process."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.processed = Counter(
            "soma_worker_events_processed",
            "Events handled (work done or nothing to do), by type",
            ["type"],
            registry=r,
        )
        self.failed = Counter(
            "soma_worker_events_failed", "Failed attempts at handling events (each retry counts)", registry=r
        )
        self.dead_lettered = Counter(
            "soma_worker_events_dead_lettered",
            "Messages sent to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.indexed = Counter(
            "soma_worker_memories_indexed", "Memories embedded and written to the indexes", registry=r
        )
        self.unindexed = Counter(
            "soma_worker_memories_unindexed", "Deleted memories removed from the indexes", registry=r
        )
        self.lag = Gauge(
            "soma_worker_consumer_lag", "Messages in assigned partitions not yet consumed", registry=r
        )
        self.batch_seconds = Histogram(
            "soma_worker_batch_duration_seconds",
            "Time to handle and commit one batch",
            buckets=_SECONDS,
            registry=r,
        )
        self.event_age = Histogram(
            "soma_worker_event_age_seconds",
            "From the write to its event being handled (end-to-end lag)",
            buckets=_SECONDS,
            registry=r,
        )
        self.published = Counter("soma_outbox_published", "Outbox events published to Kafka", registry=r)
        self.publish_failures = Counter(
            "soma_outbox_publish_failures", "Relay batches that could not be published (retried)", registry=r
        )
        self.outbox_unsent = Gauge("soma_outbox_unsent", "Outbox events not yet published", registry=r)
        self.outbox_oldest = Gauge(
            "soma_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox event", registry=r
        )
        self._server: Any = None

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Expose ``/metrics`` on ``port`` (0 = any free port); return the port."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The current value of a sample (0 when never set), e.g.
        ``value("soma_worker_memories_indexed_total")``."""
        found = self.registry.get_sample_value(name, labels or {})
        return float(found) if found is not None else 0.0

    def total(self, name: str) -> float:
        """The sum of a labelled counter over all its labels."""
        return sum(s.value for metric in self.registry.collect() for s in metric.samples if s.name == name)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
