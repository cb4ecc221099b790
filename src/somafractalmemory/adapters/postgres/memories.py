"""The ``IKeyValueStore`` half of ``PostgresStore``: memories and their history.

Every write is one SQL statement (data-modifying CTEs over ``unnest`` of
array parameters), so a batch is one round trip and one transaction: it is
stored whole or not at all. Orderings match the in-process adapter: ids
compare bytewise (``COLLATE "C"``), ties in ``recent``/``important`` go to
the smaller id, history is ordered by ``changed_at`` then arrival.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

from ...errors import InvalidInput
from ...interfaces.storage import Filters
from ...models import MAX_DIMS, Coordinate, HistoryEntry, Memory, MemoryType
from .filters import compile_filters
from .pool import PostgresPool, sql

__all__ = ["MemoryTables"]

_COLUMNS = "namespace, id, coordinate, payload, memory_type, created_at, updated_at, version"

_PUT = f"""
WITH m AS (
    INSERT INTO memories ({_COLUMNS}, importance)
    SELECT d.namespace, d.id, d.coordinate::float8[], d.payload::jsonb, d.memory_type,
           d.created_at, d.updated_at, d.version, d.importance
    FROM unnest(%(ns)s::text[], %(id)s::text[], %(coord)s::text[], %(payload)s::text[],
                %(mtype)s::text[], %(created)s::float8[], %(updated)s::float8[], %(version)s::int[],
                %(importance)s::float8[])
         AS d(namespace, id, coordinate, payload, memory_type, created_at, updated_at, version, importance)
    ON CONFLICT (namespace, id) DO UPDATE SET
        coordinate = EXCLUDED.coordinate, payload = EXCLUDED.payload,
        memory_type = EXCLUDED.memory_type, importance = EXCLUDED.importance,
        created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, version = EXCLUDED.version
    RETURNING 1
), h AS ({{history}})
SELECT (SELECT count(*) FROM m)
"""

_HISTORY = """
    INSERT INTO memory_history (namespace, memory_id, coordinate, version, action, payload,
                                memory_type, changed_at, actor, changed_keys)
    SELECT x.namespace, x.memory_id, x.coordinate::float8[], x.version, x.action, x.payload::jsonb,
           x.memory_type, x.changed_at, x.actor, x.changed_keys::jsonb
    FROM unnest(%(h_ns)s::text[], %(h_id)s::text[], %(h_coord)s::text[], %(h_version)s::int[],
                %(h_action)s::text[], %(h_payload)s::text[], %(h_mtype)s::text[],
                %(h_changed)s::float8[], %(h_actor)s::text[], %(h_keys)s::text[]) WITH ORDINALITY
         AS x(namespace, memory_id, coordinate, version, action, payload, memory_type, changed_at,
              actor, changed_keys, ord)
    ORDER BY x.ord
    RETURNING 1
"""

_DELETE = """
WITH d AS (
    DELETE FROM memories WHERE namespace = %(namespace)s AND id = ANY(%(ids)s::text[]) RETURNING id
), l AS (
    DELETE FROM links WHERE namespace = %(namespace)s
        AND (from_id IN (SELECT id FROM d) OR to_id IN (SELECT id FROM d))
), h AS ({history})
SELECT id FROM d
"""

_HISTORY_COLUMNS = (
    "namespace, memory_id, coordinate, version, action, payload, memory_type, changed_at, actor, changed_keys"
)


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("payload", f"is not JSON: {exc}") from None


def _coord_text(coord: Sequence[float]) -> str:
    return "{" + ",".join(repr(float(c)) for c in coord) + "}"


def _check_coord(coord: Sequence[float], field: str) -> None:
    if not 1 <= len(coord) <= MAX_DIMS or not all(math.isfinite(c) for c in coord):
        raise InvalidInput(field, f"must be 1 to {MAX_DIMS} finite numbers, got {tuple(coord)!r}")


def _history_params(history: Sequence[HistoryEntry]) -> dict[str, list[Any]]:
    for h in history:
        _check_coord(h.coordinate, "history.coordinate")
    return {
        "h_ns": [h.namespace for h in history],
        "h_id": [h.memory_id for h in history],
        "h_coord": [_coord_text(h.coordinate) for h in history],
        "h_version": [h.version for h in history],
        "h_action": [h.action for h in history],
        "h_payload": [None if h.payload is None else _dumps(h.payload) for h in history],
        "h_mtype": [None if h.memory_type is None else MemoryType(h.memory_type).value for h in history],
        "h_changed": [h.changed_at for h in history],
        "h_actor": [h.actor for h in history],
        "h_keys": [_dumps(list(h.changed_keys)) for h in history],
    }


def _memory(row: Sequence[Any]) -> Memory:
    return Memory(
        id=row[1],
        namespace=row[0],
        coordinate=tuple(row[2]),
        payload=row[3],
        memory_type=MemoryType(row[4]),
        created_at=row[5],
        updated_at=row[6],
        version=row[7],
    )


def _history(row: Sequence[Any]) -> HistoryEntry:
    return HistoryEntry(
        namespace=row[0],
        memory_id=row[1],
        coordinate=tuple(row[2]),
        version=row[3],
        action=row[4],
        payload=row[5],
        memory_type=MemoryType(row[6]) if row[6] is not None else None,
        changed_at=row[7],
        actor=row[8],
        changed_keys=list(row[9]),
    )


def _type_clause(memory_type: MemoryType | None) -> tuple[sql.Composable, list[Any]]:
    if memory_type is None:
        return sql.SQL(""), []
    return sql.SQL(" AND memory_type = %s"), [MemoryType(memory_type).value]


class MemoryTables:
    """Memories, history, the coordinate index; needs ``self._pool``."""

    _pool: PostgresPool

    def put_many(self, memories: Sequence[Memory], history: Sequence[HistoryEntry]) -> None:
        latest: dict[tuple[str, str], Memory] = {}
        for m in memories:  # the last write to an id in a batch wins
            _check_coord(m.coordinate, "memory.coordinate")
            latest[(m.namespace, m.id)] = m
        batch = list(latest.values())
        if not batch and not history:
            return
        params: dict[str, Any] = {
            "ns": [m.namespace for m in batch],
            "id": [m.id for m in batch],
            "coord": [_coord_text(m.coordinate) for m in batch],
            "payload": [_dumps(m.payload) for m in batch],
            "mtype": [MemoryType(m.memory_type).value for m in batch],
            "created": [m.created_at for m in batch],
            "updated": [m.updated_at for m in batch],
            "version": [m.version for m in batch],
            "importance": [m.importance for m in batch],
        }
        params.update(_history_params(history))
        query = _PUT.replace("{history}", _HISTORY)
        with self._pool.connection() as conn:
            conn.execute(query.encode(), params)

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Memory]:
        if not ids:
            return {}
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM memories WHERE namespace = %s AND id = ANY(%s::text[])".encode(),
                [namespace, list(dict.fromkeys(ids))],
            ).fetchall()
        return {row[1]: _memory(row) for row in rows}

    def delete_many(self, namespace: str, ids: Sequence[str], history: Sequence[HistoryEntry]) -> list[str]:
        if not ids and not history:
            return []
        params: dict[str, Any] = {"namespace": namespace, "ids": list(dict.fromkeys(ids))}
        params.update(_history_params(history))
        with self._pool.connection() as conn:
            rows = conn.execute(_DELETE.replace("{history}", _HISTORY).encode(), params).fetchall()
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
                yield _memory(row)
            if len(rows) < size:
                return
            after = (rows[-1][5], rows[-1][1])

    def find_range(
        self, namespace: str, lo: Coordinate, hi: Coordinate, memory_type: MemoryType | None = None
    ) -> list[Memory]:
        if not lo:
            raise InvalidInput("lo", "must have at least one value")
        if len(lo) != len(hi):
            raise InvalidInput("hi", f"has {len(hi)} values but lo has {len(lo)}")
        if any(a > b for a, b in zip(lo, hi, strict=True)):
            return []  # an empty box (the cube type would silently swap the corners)
        type_sql, type_params = _type_clause(memory_type)
        query = sql.SQL(
            "SELECT " + _COLUMNS + " FROM memories WHERE namespace = %s AND ndim = %s"
            " AND coord_cube <@ public.cube(%s::float8[], %s::float8[]){} ORDER BY coordinate, id"
        ).format(type_sql)
        params = [namespace, len(lo), [float(c) for c in lo], [float(c) for c in hi], *type_params]
        with self._pool.connection() as conn:
            return [_memory(row) for row in conn.execute(query, params)]

    def filter_ids(
        self, namespace: str, filters: Filters | None, memory_type: MemoryType | None = None
    ) -> set[str]:
        condition, params = compile_filters(filters)
        params["namespace"] = namespace
        type_sql = sql.SQL("")
        if memory_type is not None:
            params["memory_type"] = MemoryType(memory_type).value
            type_sql = sql.SQL(" AND memory_type = %(memory_type)s")
        query = sql.SQL("SELECT id FROM memories WHERE namespace = %(namespace)s{} AND {}").format(
            type_sql, condition
        )
        with self._pool.connection() as conn:
            return {row[0] for row in conn.execute(query, params)}

    def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        query = (
            f"SELECT {_HISTORY_COLUMNS} FROM memory_history WHERE namespace = %s AND memory_id = %s"
            " ORDER BY changed_at, seq"
        )
        with self._pool.connection() as conn:
            return [_history(row) for row in conn.execute(query.encode(), [namespace, memory_id])]

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
                yield _history(row)
            if len(rows) < page_size:
                return
            after = (rows[-1][7], rows[-1][10])

    def _top(self, namespace: str, n: int, memory_type: MemoryType | None, order: str) -> list[Memory]:
        if n <= 0:
            return []
        type_sql, type_params = _type_clause(memory_type)
        query = sql.SQL("SELECT " + _COLUMNS + " FROM memories WHERE namespace = %s{} ORDER BY " + order
                        + " LIMIT %s").format(type_sql)
        with self._pool.connection() as conn:
            return [_memory(row) for row in conn.execute(query, [namespace, *type_params, n])]

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
            return [row[0] for row in conn.execute(query)]
