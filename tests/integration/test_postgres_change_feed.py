"""The PostgreSQL change feed under concurrency, and processes following it.

Identity values are handed out before commit, so the feed's cursor is a
transaction id: a younger transaction's write must stay hidden while an
older one is still open, or a reader could move past the older one's write
and never see it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from somafractalmemory.adapters.postgres import PostgresStore
from somafractalmemory.factory import create_memory_system
from somafractalmemory.models import HistoryEntry, Memory, MemoryType, memory_id

pytestmark = pytest.mark.postgres
NS = "feed"


def memory(coord: float, text: str) -> Memory:
    return Memory(memory_id(NS, (coord,)), NS, (coord,), {"text": text}, MemoryType.EPISODIC, 1.0, 1.0)


def eventually(check: Callable[[], Any], seconds: float = 30) -> Any:
    """Other sessions on the shared server may hold a transaction open for a moment."""
    deadline = time.monotonic() + seconds
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return result


def test_a_younger_commit_waits_for_an_older_open_transaction(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    store = PostgresStore(dsn, schema=schema, max_size=2)
    store.migrate()
    try:
        start = store.change_seq()
        older = psycopg.connect(dsn)
        older.execute(f'SET search_path TO "{schema}", public')
        older.execute(
            "INSERT INTO memories (namespace, id, coordinate, payload, memory_type, created_at, updated_at) "
            "VALUES (%s, %s, '{1}', '{\"text\": \"older\"}', 'episodic', 1, 1)",
            [NS, memory_id(NS, (1.0,))],
        )  # open, not committed
        young = memory(2.0, "younger")
        store.put_many([young], [HistoryEntry(NS, young.id, (2.0,), 1, "created", young.payload, None, 1.0)])
        time.sleep(0.2)
        assert store.changes_since(start) == (start, [])
        assert store.change_seq() == start
        older.commit()
        older.close()
        found = eventually(lambda: len(store.changes_since(start)[1]) == 2)
        assert found
        cursor, changes = store.changes_since(start)
        assert [c.memory_id for c in changes] == [memory_id(NS, (1.0,)), young.id]
        assert cursor == store.change_seq() > start
        assert store.changes_since(cursor) == (cursor, [])
    finally:
        store.close()


def test_processes_on_postgres_with_the_fast_core_see_each_others_writes(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    config = {"postgres": {"url": dsn, "schema": schema}, "sync_interval_ms": 0}
    a = create_memory_system("development", NS, config)
    b = create_memory_system("development", NS, config)
    try:
        follower = b.backends.follower
        assert a.backends.follower is not None and follower is not None
        assert follower.keywords_local  # process-local vectors: keywords are an in-process BM25 too
        a.store_memory((1,), {"text": "a lighthouse in the fog"})

        def vector_found() -> bool:
            b.recall("lighthouse fog", top_k=1)  # a read applies the feed
            return b.backends.vectors.count(NS) == 1 and b.backends.keywords.count(NS) == 1

        assert eventually(vector_found)
        hits = b.recall_with_scores("lighthouse fog", top_k=1)
        assert hits[0].memory.payload["text"] == "a lighthouse in the fog" and hits[0].parts.vector > 0.3
        assert hits[0].parts.keyword == 1.0
        assert follower.stats["embedded"] == 1  # no shared embedding store on PostgreSQL
        a.delete((1,))

        def vector_gone() -> bool:
            b.recall("lighthouse", top_k=1)
            return b.backends.vectors.count(NS) == 0 and b.backends.keywords.count(NS) == 0

        assert eventually(vector_gone)
    finally:
        a.close()
        b.close()


def test_the_feed_is_read_in_transaction_order_through_its_index(pg_schema: tuple[str, str]) -> None:
    """The cursor's text must not decide the order: as text "999" sorts after
    "1000", so a page could end past a transaction it never returned, which
    then stays skipped. Both reads walk the xid index instead of sorting."""
    from somafractalmemory.adapters.postgres.changes import HEAD_QUERY, SINCE_QUERY

    dsn, schema = pg_schema
    store = PostgresStore(dsn, schema=schema, max_size=2)
    store.migrate()
    try:
        for k in range(3):
            m = memory(float(k), f"m{k}")
            store.put_many([m], [HistoryEntry(NS, m.id, m.coordinate, 1, "created", m.payload, None, 1.0)])
        with store.pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL enable_sort = off")  # a sort on the right key stays possible
            for query, params in ((HEAD_QUERY, None), (SINCE_QUERY, ["0", 1000])):
                plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + query, params).fetchall())
                assert "(xid)::text" not in plan, plan  # never the text
                assert "memory_changes_xid" in plan, plan  # the index gives the order
    finally:
        store.close()
