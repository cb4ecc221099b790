"""The transactional outbox on real PostgreSQL: a write and its events commit
together or not at all; the relay claims, publishes and marks; the wiring of
each mode."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from somafractalmemory.adapters.postgres import PostgresStore
from somafractalmemory.adapters.postgres.outbox import PostgresOutbox
from somafractalmemory.errors import BackendUnavailable, ConfigurationError, InvalidInput
from somafractalmemory.eventing.relay import OutboxRelay
from somafractalmemory.factory import create_memory_system
from somafractalmemory.interfaces.messaging import OutboxRecord, OutgoingMessage
from somafractalmemory.models import HistoryEntry, Link, Memory, MemoryEvent, MemoryType, memory_id
from somafractalmemory.services.events import EventEmitter

pytestmark = [pytest.mark.postgres]
NS = "ob"


@pytest.fixture
def store(pg_schema: tuple[str, str]) -> Iterator[PostgresStore]:
    dsn, schema = pg_schema
    pg = PostgresStore(dsn, schema=schema)
    pg.migrate()
    yield pg
    pg.close()


def _rows(store: PostgresStore) -> list[tuple[Any, ...]]:
    with store.pool.connection() as conn:
        return list(conn.execute("SELECT key, event, sent_at FROM outbox ORDER BY id").fetchall())


def _memory(i: int, payload: Any = None, version: int = 1) -> Memory:
    coord = (float(i), 0.0)
    return Memory(
        id=memory_id(NS, coord),
        namespace=NS,
        coordinate=coord,
        payload=payload if payload is not None else {"text": f"m{i}"},
        memory_type=MemoryType.EPISODIC,
        created_at=1.0,
        updated_at=2.0,
        version=version,
    )


def _events(emitter: EventEmitter, memories: Sequence[Memory]) -> list[MemoryEvent]:
    return emitter.for_stored(memories)


def test_write_and_events_commit_together(store: PostgresStore) -> None:
    emitter = EventEmitter(PostgresOutbox(store.pool))
    assert emitter.transactional
    ok = [_memory(i) for i in range(3)]
    store.put_many(ok, [], emitter.outbox(_events(emitter, ok)))
    rows = _rows(store)
    assert [r[0] for r in rows] == [m.id for m in ok]
    assert all(r[1]["type"] == "memory.created" and r[2] is None for r in rows)

    # a write PostgreSQL rejects (a version beyond its integer column) leaves neither memories nor
    # events, in one statement and in a pipelined multi-chunk batch alike
    for size in (2, 1201):
        batch = [_memory(100 + i) for i in range(size - 1)] + [_memory(99, version=2**31)]
        with pytest.raises(InvalidInput):
            store.put_many(batch, [], _events(emitter, batch))
        assert len(_rows(store)) == 3
        assert store.counts(NS)["total"] == 3

    # an outbox that cannot take the events fails the write too
    with store.pool.connection() as conn:
        conn.execute("ALTER TABLE outbox RENAME TO outbox_away")
    try:
        with pytest.raises(ConfigurationError):
            store.put_many([_memory(7)], [], _events(emitter, [_memory(7)]))
        assert store.counts(NS)["total"] == 3
    finally:
        with store.pool.connection() as conn:
            conn.execute("ALTER TABLE outbox_away RENAME TO outbox")


def test_deletes_and_links_write_only_what_happened(store: PostgresStore) -> None:
    emitter = EventEmitter(PostgresOutbox(store.pool))
    a, b = _memory(1), _memory(2)
    store.put_many([a, b], [])
    gone = HistoryEntry(NS, a.id, a.coordinate, 2, "deleted", None, a.memory_type, 3.0, "t", [])
    deleted = store.delete_many(NS, [a.id, "missing"], [gone], emitter.for_deleted([a, _memory(5)]))
    assert deleted == [a.id]
    assert [(r[0], r[1]["type"]) for r in _rows(store)] == [(a.id, "memory.deleted")]

    link = Link(NS, b.id, b.id, b.coordinate, b.coordinate, "self", 1.0, {}, 4.0)
    store.add_links([link], emitter.for_links([link]))
    assert store.remove_links(NS, b.id, a.id, None, emitter.for_links([link], created=False)) == 0
    assert store.remove_links(NS, b.id, b.id, "self", emitter.for_links([link], created=False)) == 1
    assert [r[1]["type"] for r in _rows(store)][1:] == ["link.created", "link.deleted"]
    assert all(r[1]["link"]["type"] == "self" for r in _rows(store)[1:])


class _Broker:
    """An ``IEventProducer`` that keeps what it was sent, or fails on demand."""

    name = "recording"

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []
        self.down = False

    def send(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        if self.down:
            raise BackendUnavailable("Kafka", "down for the test")
        self.sent.extend(messages)

    def close(self) -> None:
        return None


def test_relay_claims_publishes_and_marks(store: PostgresStore) -> None:
    outbox = PostgresOutbox(store.pool)
    outbox.publish(EventEmitter(outbox).for_stored([_memory(i) for i in range(5)]))
    broker = _Broker()
    relay = OutboxRelay(outbox, broker, "memory.events", batch_size=3)
    assert outbox.pending() == 5 and outbox.lag().oldest_age_seconds >= 0

    broker.down = True
    with pytest.raises(BackendUnavailable):
        relay.run_once()
    assert outbox.pending() == 5, "a failed publish leaves the rows unsent"
    broker.down = False
    assert relay.run_once() == 3
    assert relay.run_once() == 2
    assert relay.run_once() == 0
    assert relay.caught_up() and relay.metrics.value("soma_outbox_unsent") == 0
    assert [m.key for m in broker.sent] == [_memory(i).id.encode() for i in range(5)]
    assert all(json.loads(m.value)["schema_version"] == 1 for m in broker.sent)

    # concurrent relays never take the same rows (FOR UPDATE SKIP LOCKED)
    outbox.publish(EventEmitter(outbox).for_stored([_memory(i, version=2) for i in range(4)]))
    inner: list[Sequence[OutboxRecord]] = []

    def nested(records: Sequence[OutboxRecord]) -> None:
        inner.append(records)
        assert outbox.relay(10, lambda more: inner.append(more)) == 2  # the other two rows

    assert outbox.relay(2, nested) == 2
    assert [len(r) for r in inner] == [2, 2] and {r.id for r in inner[0]}.isdisjoint(r.id for r in inner[1])
    assert outbox.pending() == 0
    with store.pool.connection() as conn:
        conn.execute("UPDATE outbox SET sent_at = sent_at - interval '2 hours'")
    assert outbox.purge_sent(3600) == 9 and _rows(store) == []


@pytest.mark.redis
def test_mode_wiring(
    pg_schema: tuple[str, str], redis_prefix: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (dsn, schema), (redis_url, prefix) = pg_schema, redis_prefix
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    base: dict[str, Any] = {
        "postgres": {"url": dsn, "schema": schema},
        "redis": {"url": redis_url, "prefix": prefix},
        "vector": {"backend": "memory"},
        "embeddings": {"model": "hash", "dim": 32},
    }
    with pytest.raises(ConfigurationError, match="KAFKA_BOOTSTRAP_SERVERS"):
        create_memory_system("evented_enterprise", NS, base)
    # events off: no outbox, the write indexes synchronously
    off = create_memory_system("evented_enterprise", NS, {**base, "eventing": {"enabled": False}})
    try:
        assert off.backends.bus.name == "null" and off.backends.options.index_synchronously
        off.store_memory((1, 1), {"text": "indexed at once"})
        assert off.memory_stats()["vectors"] == 1 and off.memory_stats()["pending_events"] == 0
    finally:
        off.close()
    # DEVELOPMENT keeps the in-process bus, with the outbox's event shapes
    dev = create_memory_system("development", NS, base)
    try:
        seen: list[MemoryEvent] = []
        dev.backends.bus.subscribe(seen.append)
        dev.store_memory((1, 1), {"text": "version two"})
        assert dev.backends.bus.name == "memory" and [e.type for e in seen] == ["memory.updated"]
        assert set(seen[0].to_dict()) == {
            "event_id", "schema_version", "type", "namespace", "memory_id", "coordinate", "timestamp",
            "payload", "memory_type", "version",
        }  # fmt: skip
    finally:
        dev.close()
    test = create_memory_system("test", NS, {"embeddings": {"model": "hash"}})
    try:
        assert test.backends.bus.name == "null"
    finally:
        test.close()
