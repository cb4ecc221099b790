"""PostgreSQL-only behaviour: migrations, atomic batches, concurrency through
the pool, fail-fast start, index use, and filters that agree with Python."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from somafractalmemory.adapters.postgres import MIGRATIONS, PostgresPool, PostgresStore, migrate
from somafractalmemory.adapters.postgres.memories import CHUNK, filter_query, range_query
from somafractalmemory.adapters.postgres.migrations import applied_versions
from somafractalmemory.adapters.postgres.rows import Encoder
from somafractalmemory.errors import BackendUnavailable, InvalidInput, WriteConflict
from somafractalmemory.factory import create_memory_system
from somafractalmemory.models import HistoryEntry, Link, Memory, MemoryType, matches_filters, memory_id
from somafractalmemory.services.store import GUESS_NEW_AFTER

from ..evented import evented_config, no_broker
from ..threads import run_together, store_one_memory_from_both

pytestmark = pytest.mark.postgres

NS = "pgtest"


def make(
    coord: tuple[float, ...], payload: dict[str, Any] | None = None, ns: str = NS
) -> tuple[Memory, HistoryEntry]:
    mid = memory_id(ns, coord)
    body = payload if payload is not None else {"text": f"memory at {coord}"}
    memory = Memory(mid, ns, coord, body, MemoryType.EPISODIC, 1000.0, 1000.0, 1)
    entry = HistoryEntry(
        ns, mid, coord, 1, "created", body, MemoryType.EPISODIC, 1000.0, "test", sorted(body)
    )
    return memory, entry


def put(store: PostgresStore, pairs: list[tuple[Memory, HistoryEntry]]) -> None:
    store.put_many([m for m, _ in pairs], [h for _, h in pairs])


@pytest.fixture
def store(pg_schema: tuple[str, str]) -> Iterator[PostgresStore]:
    dsn, schema = pg_schema
    s = PostgresStore(dsn, schema=schema, max_size=10, timeout=30.0)
    s.migrate()
    yield s
    s.close()


def test_migrate_twice_is_a_no_op(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    pool = PostgresPool(dsn, schema=schema)
    try:
        every = [version for version, _, _ in MIGRATIONS]
        assert applied_versions(pool) == []
        assert migrate(pool) == every
        assert migrate(pool) == []
        assert applied_versions(pool) == every
        with pool.connection() as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
                )
            }
        assert {"memories", "memory_history", "links", "keyword_docs", "schema_migrations"} <= tables
    finally:
        pool.close()


def test_concurrent_migrations_take_turns(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    pools = [PostgresPool(dsn, schema=schema) for _ in range(4)]
    results: list[list[int]] = []
    errors = run_together(lambda pool: results.append(migrate(pool)), pools)
    for p in pools:
        p.close()
    assert errors == []
    applied = sorted(v for r in results for v in r)
    assert applied == [version for version, _, _ in MIGRATIONS]  # each version exactly once


def test_a_failed_batch_leaves_nothing(store: PostgresStore) -> None:
    before, before_entry = make((0.0,), {"text": "kept", "v": 1})
    put(store, [(before, before_entry)])
    updated = Memory(
        before.id, NS, before.coordinate, {"text": "changed"}, MemoryType.SEMANTIC, 1000.0, 2000.0, 2
    )
    pairs = [make((float(i),)) for i in range(1, 4)]
    memories = [updated] + [m for m, _ in pairs]
    history = [h for _, h in pairs]
    history[1].action = "exploded"  # violates the CHECK on memory_history.action
    with pytest.raises(InvalidInput):
        store.put_many(memories, history)
    assert set(store.get_many(NS, [m.id for m in memories])) == {before.id}
    assert store.get_many(NS, [before.id])[before.id].payload == {"text": "kept", "v": 1}
    assert [h.action for h in store.iter_history(NS)] == ["created"]


def test_a_failed_big_batch_leaves_nothing_either(store: PostgresStore) -> None:
    # Bigger than one statement (CHUNK): the chunks share one transaction.
    pairs = [make((float(i), 1.0)) for i in range(3 * CHUNK)]
    history = [h for _, h in pairs]
    history[-1].action = "exploded"  # fails in the last chunk, after the first ones were sent
    with pytest.raises(InvalidInput):
        store.put_many([m for m, _ in pairs], history)
    assert store.counts(NS)["total"] == 0
    assert list(store.iter_history(NS)) == []
    history[-1].action = "created"
    store.put_many([m for m, _ in pairs], history)
    assert store.counts(NS)["total"] == 3 * CHUNK
    assert [h.memory_id for h in store.iter_history(NS)] == [h.memory_id for h in history]


def test_a_big_batch_with_one_stale_memory_leaves_nothing(store: PostgresStore) -> None:
    # expect_previous over several chunks: a memory of the last chunk exists
    # already, so its version 1 may not replace it, and no chunk is kept.
    pairs = [make((float(i), 1.0)) for i in range(3 * CHUNK)]
    put(store, [pairs[-1]])
    with pytest.raises(WriteConflict):
        store.put_many([m for m, _ in pairs], [h for _, h in pairs], expect_previous=True)
    assert store.counts(NS)["total"] == 1
    assert len(list(store.iter_history(NS))) == 1
    store.put_many([m for m, _ in pairs[:-1]], [h for _, h in pairs[:-1]], expect_previous=True)
    assert store.counts(NS)["total"] == 3 * CHUNK


def test_a_failed_delete_leaves_memories_and_links(store: PostgresStore) -> None:
    (a, ha), (b, hb) = make((1.0, 1.0)), make((2.0, 2.0))
    put(store, [(a, ha), (b, hb)])
    store.add_links([Link(NS, a.id, b.id, a.coordinate, b.coordinate)])
    bad = HistoryEntry(NS, a.id, a.coordinate, 2, "vanished", None, None, 2000.0)
    with pytest.raises(InvalidInput):
        store.delete_many(NS, [a.id], [bad])
    assert set(store.get_many(NS, [a.id, b.id])) == {a.id, b.id}
    assert store.count(NS) == 1
    good = HistoryEntry(NS, a.id, a.coordinate, 2, "deleted", None, None, 2000.0)
    assert store.delete_many(NS, [a.id], [good]) == [a.id]
    assert store.count(NS) == 0  # the links touching it went in the same transaction


def test_a_nul_character_is_rejected_whole(store: PostgresStore) -> None:
    ok, bad = make((1.0,)), make((2.0,), {"text": "a\x00b"})
    with pytest.raises(InvalidInput):
        put(store, [ok, bad])
    assert store.get_many(NS, [ok[0].id, bad[0].id]) == {}


def test_a_hundred_concurrent_writers_through_the_pool(store: PostgresStore) -> None:
    writers, per_writer = 100, 20
    start = threading.Barrier(writers)

    def write(w: int) -> None:
        start.wait()
        for i in range(0, per_writer, 5):
            put(store, [make((float(w), float(j))) for j in range(i, i + 5)])
            store.get_many(NS, [memory_id(NS, (float(w), float(i)))])

    assert run_together(write, range(writers)) == []
    assert store.counts(NS)["total"] == writers * per_writer
    assert sum(1 for _ in store.iter_history(NS)) == writers * per_writer
    assert store.pool.stats().get("pool_max", 10) <= 10


def test_a_connection_the_server_closed_is_never_handed_out(pg_schema: tuple[str, str]) -> None:
    """Recently used connections skip the check query: a connection whose
    backend died while it sat in the pool must still be noticed (its socket
    has the server's goodbye to read) and replaced, not handed to a caller."""
    dsn, schema = pg_schema
    store = PostgresStore(dsn, schema=schema, min_size=2, max_size=2)
    store.migrate()
    try:
        put(store, [make((1.0, 2.0))])
        with store.pool.connection() as first, store.pool.connection() as second:
            pids = [int(c.execute("SELECT pg_backend_pid()").fetchone()[0]) for c in (first, second)]
        with psycopg.connect(dsn, autocommit=True) as admin:
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        time.sleep(0.2)  # the goodbyes arrive
        for _ in range(4):  # every pooled connection is taken at least once
            assert len(store.get_many(NS, [memory_id(NS, (1.0, 2.0))])) == 1
    finally:
        store.close()


def test_an_unreachable_server_fails_fast_with_one_clear_line() -> None:
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout=2.0)
    assert time.monotonic() - started < 5.0
    exc = info.value
    assert exc.setting == "POSTGRES_URL" and exc.service == "PostgreSQL"
    assert "POSTGRES_URL" in str(exc) and "\n" not in str(exc)
    assert exc.__cause__ is None and exc.__suppress_context__  # no chain of driver errors


def test_a_missing_database_is_unavailable_too(pg_schema: tuple[str, str]) -> None:
    dsn, _ = pg_schema
    with pytest.raises(BackendUnavailable, match="no_such_database"):
        PostgresStore(dsn.rsplit("/", 1)[0] + "/no_such_database")


def test_schemas_isolate_stores(store: PostgresStore, pg_schema: tuple[str, str]) -> None:
    dsn, _ = pg_schema
    put(store, [make((1.0,))])
    other_schema = pg_schema[1] + "_b"
    other = PostgresStore(dsn, schema=other_schema)
    try:
        assert other.migrate() == [version for version, _, _ in MIGRATIONS]
        assert other.counts(NS)["total"] == 0
    finally:
        other.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(other_schema))
            )


def _plan(store: PostgresStore, query: Any, params: Any) -> str:
    with store.pool.connection() as conn:
        conn.execute("ANALYZE memories")
        rows = conn.execute(psycopg.sql.SQL("EXPLAIN {}").format(query), params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_range_queries_use_the_gist_index(store: PostgresStore) -> None:
    put(store, [make((float(x), float(y), 0.0)) for x in range(60) for y in range(60)])
    put(store, [make((float(x), 1.0), ns="other") for x in range(500)])
    query = range_query(NS, (10.0, 10.0, 0.0), (14.0, 14.0, 0.0))
    assert query is not None
    plan = _plan(store, *query)
    assert "memories_coord_gist" in plan, plan
    assert "Seq Scan" not in plan, plan
    found = store.find_range(NS, (10.0, 10.0, 0.0), (14.0, 14.0, 0.0))
    assert len(found) == 25


def test_increasing_coordinates_stay_fast_and_exact(store: PostgresStore) -> None:
    # A timeline (t,) and a diagonal (i, i) arriving in order: the cases that
    # make a cube GiST index take minutes. Here they must take seconds.
    started = time.monotonic()
    for i in range(0, 5000, 500):
        put(store, [make((float(t),)) for t in range(i, i + 500)])
        put(store, [make((float(t), float(t))) for t in range(i, i + 500)])
    assert time.monotonic() - started < 30.0
    assert [m.coordinate for m in store.find_range(NS, (10.0,), (12.0,))] == [(10.0,), (11.0,), (12.0,)]
    diagonal = store.find_range(NS, (4000.0, 3999.5), (4001.0, 4000.5))
    assert [m.coordinate for m in diagonal] == [(4000.0, 4000.0)]


def test_string_filters_use_the_gin_index(store: PostgresStore) -> None:
    put(
        store,
        [make((float(i),), {"text": "x", "tags": [f"t{i % 400}"], "src": f"s{i}"}) for i in range(4000)],
    )
    plan = _plan(store, *filter_query(NS, {"tags": "t7"}))
    assert "memories_payload_gin" in plan, plan
    assert len(store.filter_ids(NS, {"tags": "t7"})) == 10


# -- filters: the SQL must agree with models.matches_filters on anything ---------------

SCALARS: list[Any] = [0, 1, 2, 1.0, 0.0, 2.5, -1, True, False, None, "a", "b", "1", "", 10**18]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if depth < 2 and kind < 0.2:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and kind < 0.3:
        return {k: _value(rng, depth + 1) for k in rng.sample(["x", "y", "0"], rng.randint(0, 2))}
    return rng.choice(SCALARS)


def _filter(rng: random.Random) -> dict[str, Any]:
    key = rng.choice(["a", "b", "n.x", "n.y", "n.0", "missing", "a.x"])
    shape = rng.random()
    if shape < 0.35:
        expected: Any = rng.choice(SCALARS)
    elif shape < 0.55:
        expected = rng.sample(SCALARS, rng.randint(0, 3))
    elif shape < 0.75:
        op = rng.choice(["gt", "gte", "lt", "lte"])
        expected = {op: rng.choice([0, 1, 1.5, -1, 2, True])}
    elif shape < 0.9:
        expected = {"ne": rng.choice(SCALARS)}
    else:
        expected = {"in": rng.sample(SCALARS, rng.randint(0, 3))}
    return {key: expected}


def test_filter_ids_agrees_with_matches_filters_on_random_cases(store: PostgresStore) -> None:
    rng = random.Random(20240611)
    payloads = []
    for _ in range(300):
        payload: dict[str, Any] = {"a": _value(rng), "b": _value(rng)}
        if rng.random() < 0.6:
            payload["n"] = {"x": _value(rng, 1), "y": _value(rng, 1), "0": _value(rng, 1)}
        elif rng.random() < 0.5:
            payload["n"] = [_value(rng, 1)]
        payloads.append(payload)
    pairs = [make((float(i),), p) for i, p in enumerate(payloads)]
    put(store, pairs)
    by_id = {m.id: m.payload for m, _ in pairs}
    mismatches = []
    for _ in range(400):
        filters = _filter(rng)
        if rng.random() < 0.3:
            filters.update(_filter(rng))
        expected = {mid for mid, p in by_id.items() if matches_filters(p, filters)}
        got = store.filter_ids(NS, filters)
        if got != expected:
            mismatches.append((filters, len(expected), len(got)))
    assert mismatches == []


def test_keyword_scores_match_the_in_process_bm25(pg_schema: tuple[str, str]) -> None:
    from somafractalmemory.adapters.memory.keyword import InMemoryKeywordIndex
    from somafractalmemory.adapters.postgres import PostgresKeywordIndex

    dsn, schema = pg_schema
    pool = PostgresPool(dsn, schema=schema)
    migrate(pool)
    index, reference = PostgresKeywordIndex(pool), InMemoryKeywordIndex()
    rng = random.Random(7)
    vocab = [f"word{i}" for i in range(300)]
    docs = [(f"d{i}", " ".join(rng.choices(vocab, k=rng.randint(3, 40)))) for i in range(2000)]
    try:
        for i in range(0, len(docs), 500):
            index.index(NS, docs[i : i + 500])
            reference.index(NS, docs[i : i + 500])
        index.remove(NS, ["d0", "d1"])
        reference.remove(NS, ["d0", "d1"])
        assert index.count(NS) == reference.count(NS) == 1998
        for _ in range(20):
            query = " ".join(rng.sample(vocab, 3))
            got, want = index.search(NS, query, 10), reference.search(NS, query, 10)
            assert [i for i, _ in got][:3] == [i for i, _ in want][:3], query
            want_scores = dict(reference.search(NS, query, 100))
            for doc_id, score in got:
                assert score == pytest.approx(want_scores[doc_id], rel=1e-5)
    finally:
        pool.close()


Pairs = list[tuple[Memory, HistoryEntry]]


@pytest.fixture
def one_connection(pg_schema: tuple[str, str]) -> Iterator[tuple[PostgresStore, Pairs]]:
    """A store with one connection (so one set of prepared statements) and 300 memories."""
    dsn, schema = pg_schema
    s = PostgresStore(dsn, schema=schema, max_size=1)
    s.migrate()
    pairs = [make((float(i), 1.0)) for i in range(300)]
    put(s, pairs)
    yield s, pairs
    s.close()


def test_reads_by_id_never_run_on_a_namespace_scanning_generic_plan(
    one_connection: tuple[PostgresStore, Pairs],
) -> None:
    """psycopg prepares a statement on its fifth use; PostgreSQL's generic plan for
    ``id = ANY(list)`` read the whole namespace through the range index. Lists go
    unprepared; a single id is looked up in the primary key whatever the plan."""
    s, pairs = one_connection
    ids = [m.id for m, _ in pairs]
    for k in range(10):
        assert set(s.get_many(NS, ids[k : k + 3])) == set(ids[k : k + 3])
        assert list(s.get_many(NS, [ids[k]])) == [ids[k]]
    with s._pool.connection() as conn:
        prepared = conn.execute("SELECT name, statement FROM pg_prepared_statements").fetchall()
        assert not [text for _, text in prepared if "ANY(" in text]
        single = "FROM memories WHERE namespace = $1 AND id = $2"
        one = [name for name, text in prepared if single in text]
        assert one, prepared  # the single-id read is prepared ...
        conn.execute("SET plan_cache_mode = force_generic_plan")
        plan = conn.execute(f"EXPLAIN EXECUTE {one[0]}('{NS}', '{ids[5]}')").fetchall()
        conn.execute("RESET plan_cache_mode")
    assert "memories_pkey" in plan[0][0], plan  # ... and its generic plan uses the primary key


def test_a_guarded_write_never_runs_on_a_table_scanning_generic_plan(
    one_connection: tuple[PostgresStore, Pairs],
) -> None:
    """The guarded store (``expect_previous``) looks up whether a memory still
    exists; the generic plan PostgreSQL chose for that as an ``EXISTS`` read
    every memory of the table (a hashed subplan) on every write."""
    s, pairs = one_connection
    for version in (2, 3):
        for m, h in pairs[:10]:
            m.version = h.version = version
            s.put_many([m], [h], expect_previous=True)
    with s._pool.connection() as conn:
        conn.execute("ANALYZE memories")
        prepared = conn.execute("SELECT name, statement FROM pg_prepared_statements").fetchall()
        guarded = [name for name, text in prepared if "soma_expect_written" in text]
        assert guarded, prepared
        m, h = pairs[0]
        m.version = h.version = 4
        encode, literal = Encoder(), psycopg.sql.Literal
        rows, history = literal(encode.memories([m])), literal(encode.history([h]))
        conn.execute("SET plan_cache_mode = force_generic_plan")
        query = psycopg.sql.SQL("EXPLAIN EXECUTE {}({}, {}, 1)").format(
            psycopg.sql.Identifier(guarded[0]), rows, history
        )
        plan = conn.execute(query).fetchall()
        conn.execute("RESET plan_cache_mode")
    text = "\n".join(row[0] for row in plan)
    assert "Seq Scan on memories" not in text and "memories_pkey" in text, text


def api_side(pg_schema: tuple[str, str], redis_prefix: tuple[str, str]) -> dict[str, Any]:
    """An API process's wiring: it writes memories and their outbox rows, no vectors."""
    return evented_config(pg_schema, redis_prefix, no_broker(), vector={"backend": "memory"})


def outbox_of(pg_schema: tuple[str, str], coordinate: tuple[float, ...]) -> list[tuple[int, str]]:
    """(version, type) of the outbox events of the memory at ``coordinate``."""
    url, schema = pg_schema
    with psycopg.connect(url, autocommit=True) as conn:
        query = f"SELECT (event->>'version')::int, event->>'type' FROM \"{schema}\".outbox WHERE key = %s"
        rows = conn.execute(query.encode(), [memory_id(NS, coordinate)]).fetchall()
    return sorted((int(v), str(t)) for v, t in rows)


@pytest.mark.parametrize("primed", [False, True], ids=["reading", "guessing-new"])
def test_one_memory_stored_from_two_processes_keeps_every_version(
    pg_schema: tuple[str, str], redis_prefix: tuple[str, str], primed: bool
) -> None:
    """Two memory systems (as two API processes: each with write locks of its
    own) store one memory at once: every store becomes a version of its own,
    and history and outbox hold each version once (a store whose read went
    stale is retried, and its failed write left nothing behind). Primed: each
    system has just stored new memories, so its first stores write without
    reading (as new) and find the memory there."""
    systems = [
        create_memory_system("evented_enterprise", NS, api_side(pg_schema, redis_prefix)) for _ in range(2)
    ]
    try:
        if primed:
            for k, memory in enumerate(systems):
                for i in range(GUESS_NEW_AFTER):
                    memory.store_memory((float(k), float(i), 9.0), {"text": f"new {i}"})
        total = store_one_memory_from_both(systems, per_writer=40)
        versions = outbox_of(pg_schema, (1.0, 2.0))
        assert [v for v, _ in versions] == list(range(1, total + 1))
        assert [t for _, t in versions] == ["memory.created"] + ["memory.updated"] * (total - 1)
        if primed:
            assert sum(memory._store.new_streak.missed for memory in systems) >= 1
    finally:
        for memory in systems:
            memory.close()


def test_a_store_written_as_new_over_an_existing_memory_leaves_nothing_of_that_attempt(
    pg_schema: tuple[str, str], redis_prefix: tuple[str, str]
) -> None:
    memory = create_memory_system("evented_enterprise", NS, api_side(pg_schema, redis_prefix))
    try:
        first = memory.store_memory((1.0, 2.0), {"text": "first"})
        for i in range(GUESS_NEW_AFTER):
            memory.store_memory((5.0, float(i)), {"text": f"new {i}"})
        second = memory.store_memory((1.0, 2.0), {"text": "second"})
        assert memory._store.new_streak.missed == 1
        assert second.version == 2 and second.created_at == first.created_at
        assert [(h.version, h.action) for h in memory.get_versions((1.0, 2.0))] == [
            (1, "created"),
            (2, "updated"),
        ]
        assert outbox_of(pg_schema, (1.0, 2.0)) == [(1, "memory.created"), (2, "memory.updated")]
        got = memory.retrieve((1.0, 2.0))  # the cache holds no copy of the attempt
        assert got is not None and got["text"] == "second"
    finally:
        memory.close()
