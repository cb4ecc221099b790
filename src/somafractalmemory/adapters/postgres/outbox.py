"""The transactional outbox: events committed in the same transaction as
their writes (``IOutbox``, and the ``IEventBus`` of the evented modes).

Writers call ``insert_events(conn, events)`` inside their own transaction
(``MemoryTables.put_many``/``delete_many``, ``LinkTable.add_links``/
``remove_links``), so a write and its events commit together or not at all.
The relay (``eventing.relay``) calls ``PostgresOutbox.relay``: in one
transaction it claims the oldest unsent rows with ``FOR UPDATE SKIP
LOCKED`` (concurrent relays take disjoint batches), hands them to the
producer, and marks them sent only once the broker has acknowledged them;
any failure rolls back, and the rows are claimed again later.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ...errors import ConfigurationError
from ...interfaces.messaging import OutboxLag, OutboxRecord
from ...models import MemoryEvent
from .pool import Connection, PostgresPool

__all__ = ["PostgresOutbox", "encode_events", "insert_events"]

_INSERT = b"""
INSERT INTO outbox (event, key)
SELECT e.value, e.value->>'memory_id'
FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(value, ord)
ORDER BY e.ord
"""

_CLAIM = b"""
SELECT id, key, event::text, extract(epoch FROM created_at)::float8
FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
"""

_ASYNC_COMMIT = b"SET LOCAL synchronous_commit = off"

_MARK = b"UPDATE outbox SET sent_at = clock_timestamp() WHERE id = ANY(%s::bigint[])"

_LAG = b"""
SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8
FROM outbox WHERE sent_at IS NULL
"""

_PURGE = b"""
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE sent_at IS NOT NULL
        AND sent_at < clock_timestamp() - make_interval(secs => %s) ORDER BY sent_at LIMIT %s
)
"""


def encode_events(events: Sequence[MemoryEvent]) -> str:
    """The JSON array of the events, as the outbox stores them."""
    return json.dumps([e.to_dict() for e in events], ensure_ascii=False, separators=(",", ":"))


def insert_events(conn: Connection, events: Sequence[MemoryEvent]) -> None:
    """Append ``events`` to the outbox on ``conn`` (in the caller's transaction)."""
    if events:
        conn.execute(_INSERT, [encode_events(events)])


class PostgresOutbox:
    """The outbox table as ``IOutbox`` (for the relay) and ``IEventBus``
    (``transactional``: the store writes events with its writes; ``publish``
    appends events that belong to no write, in their own transaction)."""

    name = "outbox"
    transactional = True

    def __init__(self, pool: PostgresPool, purge_batch: int = 10_000) -> None:
        self._pool = pool
        self._purge_batch = purge_batch

    # -- IEventBus ----------------------------------------------------------
    def publish(self, events: Sequence[MemoryEvent]) -> None:
        with self._pool.connection() as conn:
            insert_events(conn, events)

    def subscribe(self, handler: Callable[[MemoryEvent], None]) -> None:
        raise ConfigurationError(
            "events in the outbox reach subscribers through Kafka: run `soma worker` (docs/EVENTS.md)"
        )

    def pending(self) -> int:
        return self.lag().unsent

    # -- IOutbox ------------------------------------------------------------
    def relay(self, limit: int, send: Callable[[Sequence[OutboxRecord]], None]) -> int:
        # Pipelined: BEGIN and the claim travel together, so do the mark and
        # COMMIT: two round trips a round. The mark need not wait for the WAL
        # flush: losing it in a server crash only sends those events again
        # (delivery is at least once), and the writers' commits, which must
        # wait, have the disk to themselves.
        with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            conn.execute(_ASYNC_COMMIT)
            rows: list[Any] = conn.execute(_CLAIM, [max(1, int(limit))]).fetchall()
            if not rows:
                return 0
            records = [OutboxRecord(int(r[0]), str(r[1]), str(r[2]).encode(), float(r[3])) for r in rows]
            send(records)
            conn.execute(_MARK, [[r.id for r in records]])
        return len(records)

    def lag(self) -> OutboxLag:
        with self._pool.connection() as conn:
            row = conn.execute(_LAG).fetchone()
        return OutboxLag(int(row[0]), float(row[1])) if row else OutboxLag(0, 0.0)

    def purge_sent(self, older_than_seconds: float) -> int:
        removed = 0
        with self._pool.connection() as conn:
            while True:
                n = conn.execute(_PURGE, [float(older_than_seconds), self._purge_batch]).rowcount
                removed += max(0, n)
                if n < self._purge_batch:
                    return removed

    def health(self) -> None:
        self._pool.health()

    def close(self) -> None:
        """The pool belongs to the store that shares it; nothing to release."""
