"""Faults of the evented pipeline on real services: the broker goes away
while memories are written; a worker is SIGKILLed mid-batch; a worker is
drained with SIGTERM. Nothing is lost, nothing is indexed twice, and the
final indexes equal the canonical store."""

from __future__ import annotations

import json
import signal
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from somafractalmemory.adapters.kafka import KafkaEventProducer
from somafractalmemory.adapters.postgres.outbox import PostgresOutbox
from somafractalmemory.core import SomaFractalMemoryEnterprise
from somafractalmemory.eventing.config import KafkaSettings
from somafractalmemory.eventing.relay import OutboxRelay
from somafractalmemory.fastcore.store import FastCoreVectorStore

from ..evented import evented_config
from .conftest import Broker, free_port
from .events_support import (
    burst,
    evented_memory,
    kafka_settings,
    scrape,
    soma_worker,
    wait_for,
)
from .events_support import write_config as write_json

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.postgres, pytest.mark.redis]


def _write(memory: SomaFractalMemoryEnterprise, lo: int, hi: int, tag: str = "note") -> None:
    for start in range(lo, hi, 200):
        items = [
            ((float(i), 7.0), {"text": f"{tag} {i} of the fault suite"})
            for i in range(start, min(hi, start + 200))
        ]
        memory.store_memories_bulk(items)


def _canonical(memory: SomaFractalMemoryEnterprise) -> dict[str, int]:
    return {m.id: m.version for m in memory.backends.kv.iter_memories(memory.namespace)}


def test_broker_down_while_writing(
    pg_schema: tuple[str, str], redis_prefix: tuple[str, str], private_broker: Broker
) -> None:
    config = evented_config(pg_schema, redis_prefix, private_broker.kafka_config())
    memory = evented_memory(config)
    settings = kafka_settings(config)
    assert isinstance(memory.backends.bus, PostgresOutbox)
    relay = OutboxRelay(memory.backends.bus, KafkaEventProducer(settings), settings.topic, backoff_max=2.0)
    relaying = threading.Thread(target=relay.run, daemon=True)
    relaying.start()
    try:
        _write(memory, 0, 2000)
        assert burst(memory, config, relay=False)["indexed"] == 2000

        private_broker.stop()
        _write(memory, 2000, 10_000)  # every write succeeds while Kafka is down
        stats = memory.memory_stats()
        assert stats["total_memories"] == 10_000
        assert stats["pending_events"] == 8000, "events wait in the outbox"
        wait_for(lambda: relay.metrics.value("soma_outbox_publish_failures_total") > 0, 30, "a failed round")
        assert relay.lag().oldest_age_seconds > 0

        # The test broker keeps its log in memory, so it comes back empty: a new cluster, where
        # the relay publishes the 8,000 waiting events and a worker consumes them from the start.
        private_broker.start()
        wait_for(lambda: relay.lag().unsent == 0, 120, "the outbox drained", every=0.2)
        assert relay.metrics.value("soma_outbox_published_total") == 10_000
        assert burst(memory, config, relay=False)["indexed"] == 8000, "each memory indexed once"
        assert memory.backends.vectors.versions(memory.namespace) == _canonical(memory)
        for i in (0, 1999, 2000, 5555, 9999):
            text = f"note {i} of the fault suite"
            assert memory.recall(text, top_k=1)[0]["text"] == text
    finally:
        relay.stop()
        relaying.join(30)
        relay.producer.close()
        memory.close()


def _publish_all(memory: SomaFractalMemoryEnterprise, settings: KafkaSettings) -> None:
    assert isinstance(memory.backends.bus, PostgresOutbox)
    relay = OutboxRelay(memory.backends.bus, KafkaEventProducer(settings), settings.topic)
    while relay.run_once():
        pass
    relay.producer.close()


def _summary(process: Any, timeout: float = 120) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err.decode()[-2000:]
    summary: dict[str, Any] = json.loads(out)
    return summary


def test_killed_and_drained_workers(
    pg_schema: tuple[str, str], redis_prefix: tuple[str, str], kafka_broker: Broker, tmp_path: Path
) -> None:
    kafka = kafka_broker.kafka_config()
    api = evented_config(pg_schema, redis_prefix, kafka, vector={"backend": "memory"})
    vectors = tmp_path / "vectors"  # the workers' durable index, shared one worker at a time
    workers = write_json(
        tmp_path / "worker.json", {**api, "vector": {"backend": "fast", "path": str(vectors)}}
    )
    group = f"g-{uuid.uuid4().hex[:8]}"
    common = ["--group", group, "--batch-size", "100", "--relay"]
    memory = evented_memory(api)
    try:
        _write(memory, 0, 3000)
        _publish_all(memory, kafka_settings(api))  # on the topic once (a killed relay may re-send a batch)
        port = free_port()
        first = soma_worker(workers, *common[:-1], "--metrics-port", str(port))
        try:
            wait_for(
                lambda: scrape(port, "soma_worker_events_processed_total") >= 700, 90, "a running worker"
            )
        finally:
            first.send_signal(signal.SIGKILL)  # mid-batch: no drain, no final commit
            first.wait(30)
        _write(memory, 0, 300, tag="rewritten")  # version 2 of 300 memories

        second = _summary(soma_worker(workers, *common, "--metrics-port", "0", "--burst"))
        assert 0 < second["processed"] <= 3300 - 600, second  # the killed worker's commits held
        index = FastCoreVectorStore(dim=64, path=vectors)
        assert index.versions(memory.namespace) == _canonical(memory), "index equals the canonical store"
        index.close()
        assert memory.backends.keywords.count(memory.namespace) == 3000

        # graceful drain: SIGTERM finishes and commits the batch in hand; the next worker starts after it
        port = free_port()
        third = soma_worker(workers, *common, "--metrics-port", str(port))
        idle = lambda: scrape(port, "soma_worker_consumer_lag") == 0 == scrape(port, "soma_outbox_unsent")  # noqa: E731
        wait_for(idle, 60, "an idle worker")
        _write(memory, 3000, 3500)
        wait_for(lambda: scrape(port, "soma_worker_events_processed_total") >= 100, 60, "some progress")
        third.send_signal(signal.SIGTERM)
        drained = _summary(third, 60)
        fourth = _summary(soma_worker(workers, *common, "--metrics-port", "0", "--burst"))
        assert drained["processed"] + fourth["processed"] == 500, (drained, fourth)
        index = FastCoreVectorStore(dim=64, path=vectors)
        assert index.versions(memory.namespace) == _canonical(memory)
        index.close()
    finally:
        memory.close()
