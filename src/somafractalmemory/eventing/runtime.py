"""The worker process: consumer, handler, dead letters, relay and metrics,
wired from the same backends the API uses (``soma worker`` and
``scripts/run_consumers.py`` both call ``run_worker``).

``WorkerRuntime`` takes already-built ``Backends`` (tests run one in a
thread next to a memory system); ``run_worker`` builds them from settings,
installs SIGTERM/SIGINT handlers for a graceful drain, and runs until
stopped (or caught up, in burst mode).
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

from ..adapters.hybrid import CachedKeyValueStore
from ..adapters.registry import load
from ..errors import ConfigurationError
from ..gcpause import freeze_startup
from ..interfaces.messaging import IOutbox
from ..interfaces.storage import IKeyValueStore
from ..services.backends import Backends
from ..services.indexer import Indexer
from ..settings import Settings
from .config import KafkaSettings
from .handler import IndexingHandler, Invalidate
from .metrics import PipelineMetrics
from .relay import OutboxRelay
from .worker import EventWorker, WorkerOptions

__all__ = ["WorkerConfig", "WorkerRuntime", "run_worker"]
log = logging.getLogger(__name__)


@dataclass
class WorkerConfig:
    """What ``soma worker`` is asked to do."""

    group: str = "soma-indexers"
    metrics_port: int = 0  # 0 = no metrics endpoint
    burst: bool = False
    relay: bool = False
    batch_size: int = 500


class WorkerRuntime:
    """One worker (and optionally the outbox relay) over ``backends``."""

    def __init__(
        self,
        backends: Backends,
        kafka: KafkaSettings,
        config: WorkerConfig,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.backends = backends
        self.kafka = kafka
        self.config = config
        self.metrics = metrics or PipelineMetrics()
        load("admin", "kafka")(kafka).ensure_topics()
        kv: IKeyValueStore = backends.kv
        invalidate: Invalidate | None = None
        cached = backends.kv
        if isinstance(cached, CachedKeyValueStore):  # read the truth; drop cached copies of deleted memories
            kv, invalidate = cached.canonical, cached.invalidate
        indexer = Indexer(backends.embedder, backends.vectors, backends.keywords)
        handler = IndexingHandler(kv, indexer, backends.vectors, invalidate)
        self.relay: OutboxRelay | None = None
        if config.relay:
            if not isinstance(backends.bus, IOutbox):
                raise ConfigurationError(
                    "--relay needs the PostgreSQL outbox: run in evented_enterprise or cloud_managed "
                    "with POSTGRES_URL and KAFKA_BOOTSTRAP_SERVERS"
                )
            self.relay = OutboxRelay(
                backends.bus, load("producer", "kafka")(kafka), kafka.topic, self.metrics
            )
        self.dead_letters = load("producer", "kafka")(kafka)
        self.worker = EventWorker(
            load("consumer", "kafka")(kafka, config.group),
            handler,
            self.dead_letters,
            kafka.dlq_topic,
            self.metrics,
            WorkerOptions(batch_size=config.batch_size, burst=config.burst),
            flush=backends.vectors.flush,
            idle_check=self.relay.caught_up if self.relay is not None else None,
        )

    def stop(self) -> None:
        """Graceful drain: finish the batch in hand, commit, leave."""
        self.worker.stop()

    def run(self) -> dict[str, float]:
        """Run until stopped (or caught up in burst mode); return the counters."""
        relay_thread: threading.Thread | None = None
        if self.relay is not None:
            relay_thread = threading.Thread(target=self.relay.run, name="outbox-relay", daemon=True)
            relay_thread.start()
        try:
            self.worker.run()
        finally:
            if self.relay is not None and relay_thread is not None:
                self.relay.stop()
                relay_thread.join(timeout=30)
                self.relay.producer.close()
            self.dead_letters.close()
        return self.summary()

    def summary(self) -> dict[str, float]:
        m = self.metrics
        return {
            "processed": m.total("soma_worker_events_processed_total"),
            "indexed": m.value("soma_worker_memories_indexed_total"),
            "unindexed": m.value("soma_worker_memories_unindexed_total"),
            "dead_lettered": m.total("soma_worker_events_dead_lettered_total"),
            "published": m.value("soma_outbox_published_total"),
        }


def run_worker(
    mode: str | None,
    config: dict[str, Any] | None,
    worker: WorkerConfig,
    settings: Settings | None = None,
) -> dict[str, float]:
    """Build the backends for ``mode``/``config``, run one worker until it is
    stopped (SIGTERM, Ctrl-C) or, in burst mode, caught up; close everything."""
    from ..factory import create_backends
    from ..fastcore.blas import use_threads

    s = settings or Settings()
    config = dict(config or {})
    kafka = KafkaSettings.resolve(config.get("kafka"), s)
    if kafka is None:
        raise ConfigurationError("soma worker needs a broker: set KAFKA_BOOTSTRAP_SERVERS")
    use_threads(s.blas_threads)
    backends = create_backends(mode, config, s)
    metrics = PipelineMetrics()
    try:
        runtime = WorkerRuntime(backends, kafka, worker, metrics)
        if worker.metrics_port:
            port = metrics.serve(worker.metrics_port)
            log.info("worker metrics on :%d/metrics", port)
        if threading.current_thread() is threading.main_thread():  # the process is the worker
            freeze_startup()

            def drain(signum: int, frame: FrameType | None) -> None:
                log.info("signal %d: draining", signum)
                runtime.stop()

            signal.signal(signal.SIGTERM, drain)
            signal.signal(signal.SIGINT, drain)
        return runtime.run()
    finally:
        metrics.close()
        backends.close()
