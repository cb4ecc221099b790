"""The evented pipeline end to end on PostgreSQL, Redis and a Kafka-protocol
broker: writes commit their events to the outbox, the relay publishes them,
a worker indexes, recall finds; read-your-writes; dead letters."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest

from somafractalmemory.adapters.kafka import KafkaEventConsumer, KafkaEventProducer
from somafractalmemory.errors import BackendUnavailable
from somafractalmemory.eventing.schema import validate_event
from somafractalmemory.interfaces.messaging import OutgoingMessage

from ..evented import evented_config
from .conftest import Broker
from .events_support import ThreadWorker, burst, evented_memory, kafka_settings, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def stack(pg_schema: tuple[str, str], redis_prefix: tuple[str, str], kafka_broker: Broker) -> dict[str, Any]:
    return evented_config(pg_schema, redis_prefix, kafka_broker.kafka_config())


def _outbox(pg: tuple[str, str]) -> list[tuple[Any, ...]]:
    dsn, schema = pg
    with psycopg.connect(dsn, autocommit=True) as conn:
        query = f'SELECT key, event, sent_at FROM "{schema}".outbox ORDER BY id'
        return list(conn.execute(query.encode()).fetchall())


def _read_topic(config: dict[str, Any], topic: str, expected: int) -> list[Any]:
    consumer = KafkaEventConsumer(kafka_settings(config), f"reader-{time.time_ns()}", [topic])
    found: list[Any] = []
    try:
        deadline = time.monotonic() + 30
        while len(found) < expected and time.monotonic() < deadline:
            found.extend(consumer.poll(500, 0.5))
    finally:
        consumer.close()
    return found


def test_worker_indexes_what_the_core_stored(stack: dict[str, Any], pg_schema: tuple[str, str]) -> None:
    memory = evented_memory(stack)
    try:
        assert memory.backends.bus.name == "outbox"
        assert not memory.backends.options.index_synchronously
        for i in range(40):
            memory.store_memory((i, 0.0), {"text": f"note number {i} about tea", "n": i})
        memory.store_memory((3, 0.0), {"text": "note number 3 about coffee now", "n": 3})  # version 2
        memory.link_memories((1, 0.0), (2, 0.0), "related")
        assert memory.delete((5, 0.0))
        stats = memory.memory_stats()
        assert stats["vectors"] == 0, "the write must not index: the worker does"
        assert stats["pending_events"] == 43 == len(_outbox(pg_schema))

        summary = burst(memory, stack)
        assert summary["published"] == 43
        assert summary["processed"] == 43
        assert summary["indexed"] == 39  # 40 created, 1 deleted (the update joins its create's batch)
        stats = memory.memory_stats()
        assert (stats["pending_events"], stats["vectors"], stats["keyword_documents"]) == (0, 39, 39)
        assert all(sent_at is not None for _, _, sent_at in _outbox(pg_schema))
        hits = memory.recall("coffee", top_k=1)
        assert hits[0]["text"] == "note number 3 about coffee now"
        texts = [h["text"] for h in memory.recall("note number 5 about tea", top_k=39)]
        assert "note number 5 about tea" not in texts and "note number 6 about tea" in texts
        ns = memory.namespace
        indexed = memory.backends.vectors.versions(ns)
        canonical = {m.id: m.version for m in memory.backends.kv.iter_memories(ns)}
        assert indexed == canonical

        # a replay of the same events changes nothing
        again = burst(memory, stack, group="replay-" + ns)
        assert again["processed"] == 43 and again["indexed"] == 0

        # every event on the topic: schema-valid, keyed by its memory id
        messages = _read_topic(stack, stack["kafka"]["topic"], 43)
        assert len(messages) == 43
        for message in messages:
            event = json.loads(message.value)
            validate_event(event)
            assert message.key == event["memory_id"].encode()
        kinds = [json.loads(m.value)["type"] for m in messages]
        assert sorted(set(kinds)) == ["link.created", "memory.created", "memory.deleted", "memory.updated"]
    finally:
        memory.close()


def test_read_your_writes(stack: dict[str, Any], pg_schema: tuple[str, str]) -> None:
    memory = evented_memory(stack)
    worker = ThreadWorker(memory, stack).start()
    try:
        wait_for(lambda: worker.runtime.worker.consumer.assigned(), 30, "partitions assigned")
        for i in range(5):
            stored = memory.store_memory((i, 1.0), {"text": f"fresh thought {i}"}, wait_indexed=True)
            versions = memory.backends.vectors.versions(memory.namespace, [stored.id])
            assert versions == {stored.id: stored.version}
            assert memory.recall(f"fresh thought {i}", top_k=1)[0]["text"] == f"fresh thought {i}"
        updated = memory.store_memory((0, 1.0), {"text": "changed thought"}, wait_indexed=True)
        assert memory.backends.vectors.versions(memory.namespace, [updated.id]) == {updated.id: 2}
    finally:
        worker.stop()
        memory.close()
    # per setting: every store waits by default; with no worker it times out, the write is kept
    waiting = evented_memory(
        {**stack, "eventing": {"read_your_writes": True, "read_your_writes_timeout": 0.3}}
    )
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"not indexed within 0\.3s"):
            waiting.store_memory((9, 9.0), {"text": "nobody indexes me"})
        assert time.monotonic() - started < 3
        assert (waiting.retrieve((9, 9.0)) or {})["text"] == "nobody indexes me"
        assert waiting.store_memory((9, 8.0), {"text": "no wait"}, wait_indexed=False).version == 1
    finally:
        waiting.close()


def test_malformed_messages_are_dead_lettered(stack: dict[str, Any]) -> None:
    memory = evented_memory(stack)
    settings = kafka_settings(stack)
    producer = KafkaEventProducer(settings)
    try:
        memory.store_memory((1, 2.0), {"text": "before the poison"})
        producer.send(
            settings.topic,
            [
                OutgoingMessage(b"x", b"this is not json"),
                OutgoingMessage(b"y", json.dumps({"type": "memory.created", "namespace": "n"}).encode()),
                OutgoingMessage(None, b"[1, 2, 3]"),
            ],
        )
        memory.store_memory((2, 2.0), {"text": "after the poison"})
        summary = burst(memory, stack)
        assert summary["dead_lettered"] == 3
        assert summary["indexed"] == 2
        assert memory.memory_stats()["vectors"] == 2
        dead = _read_topic(stack, settings.dlq_topic, 3)
        assert sorted(m.value for m in dead) == sorted(
            [
                b"this is not json",
                b"[1, 2, 3]",
                json.dumps({"type": "memory.created", "namespace": "n"}).encode(),
            ]
        )
        for message in dead:
            assert message.headers["error"].startswith(b"malformed")
            assert message.headers["source"].startswith(settings.topic.encode())
    finally:
        producer.close()
        memory.close()


def test_doctor_reports_each_configured_service(
    kafka_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from somafractalmemory.cli.main import cli

    for name in ("QDRANT_URL", "QDRANT_HOST", "REDIS_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POSTGRES_URL", "postgresql://postgres:secret@127.0.0.1:5432/test")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/15")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
    result = CliRunner().invoke(cli, ["--json", "doctor"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and [s["service"] for s in report["services"]] == ["PostgreSQL", "Redis", "Kafka"]
    assert report["services"][0]["version"].startswith("PostgreSQL ")
    assert report["services"][1]["version"].startswith("Redis ")
    assert "secret" not in result.output and all(s["latency_ms"] >= 0 for s in report["services"])

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing listens there
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 3
    assert "Kafka" in result.output and "DOWN" in result.output and "reachable" in result.output
