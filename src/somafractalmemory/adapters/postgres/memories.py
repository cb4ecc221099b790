"""The ``IKeyValueStore`` half of ``PostgresStore``: memories and their history.

Every write is one SQL statement (data-modifying CTEs over a JSON array of
rows, see ``rows.py``): the memories, their history and, in the evented
modes, their outbox events. A batch is one round trip and one transaction:
it is stored whole or not at all. Batches over ``CHUNK`` memories are sent as
pipelined statements inside one transaction, still one round trip. Rows are
written in key order, so concurrent batches cannot deadlock.

Orderings match the in-process adapter: ids compare bytewise
(``COLLATE "C"``), ties in ``recent``/``important`` go to the smaller id,
history is ordered by ``changed_at`` then arrival.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from psycopg import errors as pg_errors
from psycopg import sql

from ...errors import InvalidInput, WriteConflict
from ...interfaces.storage import Filters
from ...models import Coordinate, HistoryEntry, Memory, MemoryEvent, MemoryType
from .filters import compile_filters
from .outbox import encode_events
from .pool import PostgresPool
from .rows import Encoder, chunks, history_from_row, memory_from_row

__all__ = ["MemoryTables"]

#: Memories per statement in a batch; bigger batches are pipelined in one transaction.
CHUNK = 500

_COLUMNS = "namespace, id, coordinate, payload, memory_type, created_at, updated_at, version"

#: The point of dimensions 3 and 4 in the range index (migration 6): the same text, or
#: the planner cannot use the index for it.
COORD_POINT_34 = "point(coalesce(coordinate[3], 0), coalesce(coordinate[4], 0))"

# A batch travels as one JSON array of flat objects (serialised by the C json
# encoder): far cheaper than one array parameter per column. Payloads and
# coordinates ride inside it as strings (JSON text, array literals), which
# the server parses three times faster than nested values.
_PUT = """
WITH m AS (
    INSERT INTO memories (namespace, id, coordinate, payload, memory_type, created_at, updated_at,
                          version, importance)
    SELECT r.namespace, r.id, r.coordinate::float8[], r.payload::jsonb, r.memory_type, r.created_at,
           r.updated_at, r.version, r.importance
    FROM json_to_recordset(%(rows)s::json) AS r(namespace text, id text, coordinate text,
         payload text, memory_type text, created_at float8, updated_at float8, version int,
         importance float8){fresh}
    ON CONFLICT (namespace, id) DO UPDATE SET
        coordinate = EXCLUDED.coordinate, payload = EXCLUDED.payload,
        memory_type = EXCLUDED.memory_type, importance = EXCLUDED.importance,
        created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, version = EXCLUDED.version
    {guard}
    RETURNING 1
), h AS ({history}){events}
SELECT {result}
"""

# ``expect_previous``: a row is replaced only over the version before its own
# (a version 1 never replaces a row), a version above 1 is not inserted where
# no row is (the memory was deleted since it was read; a delete committed
# between this statement's snapshot and its insert still lets it in), and
# the statement fails, writing nothing, unless every row was written
# (migration 8).
_GUARD = "WHERE memories.version = EXCLUDED.version - 1"
# A scalar subquery, not EXISTS: the generic plan of an EXISTS under OR was a
# hashed subplan reading every memory of the table for each write.
_FRESH = """
    WHERE r.version = 1
       OR (SELECT x.version FROM memories x WHERE x.namespace = r.namespace AND x.id = r.id) IS NOT NULL"""
_EXPECT = "soma_expect_written(%(expected)s, (SELECT count(*) FROM m))"

# The outbox rows of a write, as one more CTE of its statement (``outbox._INSERT``).
_EVENTS = """, o AS (
    INSERT INTO outbox (event, key)
    SELECT e.value, e.value->>'memory_id'
    FROM jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY AS e(value, ord)
    ORDER BY e.ord
    RETURNING 1
)"""

_HISTORY = """
    INSERT INTO memory_history (namespace, memory_id, coordinate, version, action, payload,
                                memory_type, changed_at, actor, changed_keys)
    SELECT x.namespace, x.memory_id, x.coordinate::float8[], x.version, x.action, x.payload::jsonb,
           x.memory_type, x.changed_at, x.actor, coalesce(x.changed_keys, '[]')
    FROM ROWS FROM (json_to_recordset(%(history)s::json) AS (namespace text, memory_id text,
         coordinate text, version int, action text, payload text, memory_type text,
         changed_at float8, actor text, changed_keys jsonb)) WITH ORDINALITY
         AS x(namespace, memory_id, coordinate, version, action, payload, memory_type, changed_at,
              actor, changed_keys, ord)
    ORDER BY x.ord
    RETURNING 1
"""

#: ``id = ANY(list)`` never goes through a prepared statement (``prepare=False``):
#: psycopg prepares a statement on its fifth use, and PostgreSQL's generic plan
#: for it, not knowing the namespace or the list, read the whole namespace through
#: the range index and filtered the ids (0.5 ms at 2,200 memories, growing with
#: the namespace) where the custom plan looks each id up in the primary key.
_GET_MANY = f"SELECT {_COLUMNS} FROM memories WHERE namespace = %s AND id = ANY(%s::text[])".encode()
_GET_ONE = f"SELECT {_COLUMNS} FROM memories WHERE namespace = %s AND id = %s".encode()

_DELETE = """
WITH d AS (
    DELETE FROM memories WHERE namespace = %(namespace)s AND id = ANY(%(ids)s::text[]) RETURNING id
), l AS (
    DELETE FROM links WHERE namespace = %(namespace)s
        AND (from_id IN (SELECT id FROM d) OR to_id IN (SELECT id FROM d))
), h AS ({history}){events}
SELECT id FROM d
"""

# The outbox rows of the memories a delete actually removed.
_DELETE_EVENTS = """, o AS (
    INSERT INTO outbox (event, key)
    SELECT e.value, e.value->>'memory_id'
    FROM jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY AS e(value, ord)
    WHERE e.value->>'memory_id' IN (SELECT id FROM d)
    ORDER BY e.ord
    RETURNING 1
)"""

_HISTORY_COLUMNS = (
    "namespace, memory_id, coordinate, version, action, payload, memory_type, changed_at, actor, changed_keys"
)


def _put_sql(events: bool, guarded: bool) -> bytes:
    text = _PUT.replace("{history}", _HISTORY).replace("{events}", _EVENTS if events else "")
    text = text.replace("{guard}", _GUARD if guarded else "").replace("{fresh}", _FRESH if guarded else "")
    return text.replace("{result}", _EXPECT if guarded else "(SELECT count(*) FROM m)").encode()


#: (with events, guarded) -> statement
_PUT_SQL = {(e, g): _put_sql(e, g) for e in (False, True) for g in (False, True)}
_DELETE_SQL = _DELETE.replace("{history}", _HISTORY).replace("{events}", "").encode()
_DELETE_EVENTS_SQL = _DELETE.replace("{history}", _HISTORY).replace("{events}", _DELETE_EVENTS).encode()


def _type_clause(memory_type: MemoryType | None) -> tuple[sql.Composable, list[Any]]:
    if memory_type is None:
        return sql.SQL(""), []
    return sql.SQL(" AND memory_type = %s"), [MemoryType(memory_type).value]


def range_query(
    namespace: str, lo: Coordinate, hi: Coordinate, memory_type: MemoryType | None = None
) -> tuple[sql.Composed, list[Any]] | None:
    """The SQL of ``find_range`` (served by the GiST index ``memories_coord_gist_4d``),
    or ``None`` for an empty box (``lo > hi`` in some dimension)."""
    if not lo:
        raise InvalidInput("lo", "must have at least one value")
    if len(lo) != len(hi):
        raise InvalidInput("hi", f"has {len(hi)} values but lo has {len(lo)}")
    if any(a > b for a, b in zip(lo, hi, strict=True)):
        return None  # an empty box (box() would silently swap the corners)
    lo_f, hi_f = [float(c) for c in lo], [float(c) for c in hi]

    def corners(a: int, b: int) -> list[float]:  # box() of dimensions a and b (0 where missing)
        return [(c[d] if d < len(c) else 0.0) for c in (lo_f, hi_f) for d in (a, b)]

    # The GiST index narrows to the box of the first four dimensions (a
    # superset: geometric operators are fuzzy); exact comparisons decide.
    exact = sql.SQL(" AND ").join(
        sql.SQL("coordinate[{}] BETWEEN %s AND %s").format(sql.Literal(i + 1)) for i in range(len(lo_f))
    )
    type_sql, type_params = _type_clause(memory_type)
    query = sql.SQL(
        "SELECT " + _COLUMNS + " FROM memories WHERE namespace = %s AND ndim = %s"
        " AND coord_point <@ box(point(%s, %s), point(%s, %s))"
        " AND " + COORD_POINT_34 + " <@ box(point(%s, %s), point(%s, %s))"
        " AND {}{} ORDER BY coordinate, id"
    ).format(exact, type_sql)
    bounds = [v for pair in zip(lo_f, hi_f, strict=True) for v in pair]
    return query, [namespace, len(lo_f), *corners(0, 1), *corners(2, 3), *bounds, *type_params]


def filter_query(
    namespace: str, filters: Filters | None, memory_type: MemoryType | None = None
) -> tuple[sql.Composed, dict[str, Any]]:
    """The SQL of ``filter_ids``: ``models.matches_filters`` over the JSONB payloads."""
    condition, params = compile_filters(filters)
    params["namespace"] = namespace
    type_sql = sql.SQL("")
    if memory_type is not None:
        params["memory_type"] = MemoryType(memory_type).value
        type_sql = sql.SQL(" AND memory_type = %(memory_type)s")
    query = sql.SQL("SELECT id FROM memories WHERE namespace = %(namespace)s{} AND {}").format(
        type_sql, condition
    )
    return query, params


class MemoryTables:
    """Memories, history, the coordinate index; needs ``self._pool``."""

    _pool: PostgresPool

    def put_many(
        self,
        memories: Sequence[Memory],
        history: Sequence[HistoryEntry],
        events: Sequence[MemoryEvent] = (),
        expect_previous: bool = False,
    ) -> None:
        latest: dict[tuple[str, str], Memory] = {}
        for m in memories:  # the last write to an id in a batch wins
            latest[(m.namespace, m.id)] = m
        # Rows are locked in key order, so concurrent batches cannot deadlock.
        batch = [latest[key] for key in sorted(latest)]
        if not batch and not history:
            return
        encode = Encoder()
        mem_chunks, hist_chunks = chunks(batch, CHUNK), chunks(history, CHUNK)
        steps = max(len(mem_chunks), len(hist_chunks))

        def statement(k: int) -> tuple[bytes, dict[str, Any]]:
            rows = mem_chunks[k] if k < len(mem_chunks) else []
            params: dict[str, Any] = {
                "rows": encode.memories(rows),
                "history": encode.history(hist_chunks[k] if k < len(hist_chunks) else []),
            }
            if expect_previous:
                params["expected"] = len(rows)
            # The events (the outbox) ride with the first chunk: same transaction.
            with_events = k == 0 and bool(events)
            if with_events:
                params["events"] = encode_events(events)
            return _PUT_SQL[(with_events, expect_previous)], params

        with self._pool.connection() as conn:
            try:
                if steps == 1:  # one statement: atomic by itself, one round trip
                    conn.execute(*statement(0))
                    return
                # A big batch: one transaction of pipelined chunks, so the server
                # writes chunk k while the next one is being encoded here.
                with conn.pipeline(), conn.transaction():
                    for k in range(steps):
                        conn.execute(*statement(k))
            except pg_errors.SerializationFailure as exc:
                if not expect_previous:
                    raise
                raise WriteConflict(str(exc).strip().splitlines()[0]) from exc

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Memory]:
        if not ids:
            return {}
        unique = list(dict.fromkeys(ids))
        with self._pool.connection() as conn:
            if len(unique) == 1:  # a store's read: both key columns, the primary key in any plan
                rows = conn.execute(_GET_ONE, [namespace, unique[0]]).fetchall()
            else:
                rows = conn.execute(_GET_MANY, [namespace, unique], prepare=False).fetchall()
        return {row[1]: memory_from_row(row) for row in rows}

    def delete_many(
        self,
        namespace: str,
        ids: Sequence[str],
        history: Sequence[HistoryEntry],
        events: Sequence[MemoryEvent] = (),
    ) -> list[str]:
        if not ids and not history:
            return []
        params = {
            "namespace": namespace,
            "ids": list(dict.fromkeys(ids)),
            "history": Encoder().history(history),
        }
        query = _DELETE_SQL
        if events:  # the events of the memories actually deleted: same statement, same transaction
            query = _DELETE_EVENTS_SQL
            params["events"] = encode_events(events)
        with self._pool.connection() as conn:
            rows = conn.execute(query, params, prepare=False).fetchall()  # see _GET_MANY
        gone = {row[0] for row in rows}
        return [i for i in params["ids"] if i in gone]

    def iter_memories(
        self, namespace: str, memory_type: MemoryType | None = None, page_size: int = 500
    ) -> Iterator[Memory]:
        type_sql, type_params = _type_clause(memory_type)
        query = sql.SQL(
            "SELECT " + _COLUMNS + " FROM memories WHERE namespace = %s{} AND (created_at, id) > (%s, %s)"
            " ORDER BY created_at, id LIMIT %s"
        ).format(type_sql)
        after: tuple[float, str] = (-math.inf, "")
        size = max(1, page_size)
        while True:
            with self._pool.connection() as conn:
                rows = conn.execute(query, [namespace, *type_params, *after, size]).fetchall()
            for row in rows:
                yield memory_from_row(row)
            if len(rows) < size:
                return
            after = (rows[-1][5], rows[-1][1])

    def find_range(
        self, namespace: str, lo: Coordinate, hi: Coordinate, memory_type: MemoryType | None = None
    ) -> list[Memory]:
        query = range_query(namespace, lo, hi, memory_type)
        if query is None:
            return []
        with self._pool.connection() as conn:
            return [memory_from_row(row) for row in conn.execute(*query).fetchall()]

    def filter_ids(
        self, namespace: str, filters: Filters | None, memory_type: MemoryType | None = None
    ) -> set[str]:
        with self._pool.connection() as conn:
            return {row[0] for row in conn.execute(*filter_query(namespace, filters, memory_type)).fetchall()}

    def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        query = (
            f"SELECT {_HISTORY_COLUMNS} FROM memory_history WHERE namespace = %s AND memory_id = %s"
            " ORDER BY changed_at, seq"
        )
        with self._pool.connection() as conn:
            return [
                history_from_row(row)
                for row in conn.execute(query.encode(), [namespace, memory_id]).fetchall()
            ]

    def iter_history(self, namespace: str, page_size: int = 1000) -> Iterator[HistoryEntry]:
        query = (
            f"SELECT {_HISTORY_COLUMNS}, seq FROM memory_history WHERE namespace = %s"
            " AND (changed_at, seq) > (%s, %s) ORDER BY changed_at, seq LIMIT %s"
        )
        after: tuple[float, int] = (-math.inf, 0)
        while True:
            with self._pool.connection() as conn:
                rows = conn.execute(query.encode(), [namespace, *after, page_size]).fetchall()
            for row in rows:
                yield history_from_row(row)
            if len(rows) < page_size:
                return
            after = (rows[-1][7], rows[-1][10])

    def _top(self, namespace: str, n: int, memory_type: MemoryType | None, order: str) -> list[Memory]:
        if n <= 0:
            return []
        type_sql, type_params = _type_clause(memory_type)
        query = sql.SQL(
            "SELECT " + _COLUMNS + " FROM memories WHERE namespace = %s{} ORDER BY " + order + " LIMIT %s"
        ).format(type_sql)
        with self._pool.connection() as conn:
            return [
                memory_from_row(row) for row in conn.execute(query, [namespace, *type_params, n]).fetchall()
            ]

    def recent(self, namespace: str, n: int, memory_type: MemoryType | None = None) -> list[Memory]:
        """Newest ``updated_at`` first; ties by id."""
        return self._top(namespace, n, memory_type, "updated_at DESC, id")

    def important(self, namespace: str, n: int, memory_type: MemoryType | None = None) -> list[Memory]:
        """Highest importance first; ties: newest ``updated_at``, then id."""
        return self._top(namespace, n, memory_type, "importance DESC, updated_at DESC, id")

    def counts(self, namespace: str) -> dict[str, int]:
        out = {"total": 0, "episodic": 0, "semantic": 0}
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT memory_type, count(*) FROM memories WHERE namespace = %s GROUP BY memory_type",
                [namespace],
            ).fetchall()
        for memory_type, count in rows:
            out[memory_type] = int(count)
            out["total"] += int(count)
        return out

    def namespaces(self) -> list[str]:
        # A loose index scan: one index probe per namespace, not a scan of every row.
        query = """
            WITH RECURSIVE ns(name) AS (
                (SELECT namespace FROM memories ORDER BY namespace LIMIT 1)
                UNION ALL
                SELECT (SELECT namespace FROM memories WHERE namespace > ns.name ORDER BY namespace LIMIT 1)
                FROM ns WHERE ns.name IS NOT NULL
            )
            SELECT name FROM ns WHERE name IS NOT NULL
        """
        with self._pool.connection() as conn:
            return [row[0] for row in conn.execute(query).fetchall()]
