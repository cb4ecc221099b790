"""Embedded durable store: ``IKeyValueStore`` and ``IGraphStore`` in one SQLite file.

Tables: ``memories`` (one row per memory: coordinate as JSON and as columns
``c0``..``c15``, payload as JSON, type, importance, timestamps, version),
``history`` (append-only) and ``links`` (see ``links.py``). Every
``put_many``/``delete_many`` is one transaction; ``delete_many`` removes the
links touching the ids in the same transaction.

Range queries are served by an R*Tree (``memories_box``) kept in step with
``memories`` by triggers. Its first dimension is a key of ``(namespace,
ndim)`` (a 19-bit hash of the namespace times 17 plus ndim), the other four
are the first ``min(ndim, 4)`` coordinates, so a box query only visits
points of the right namespace and dimensionality near the box; the exact
inclusive check on ``c0``..``c15`` follows in the same statement (the R*Tree
stores 32-bit floats, rounded outwards, so it never misses a point).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ...errors import InvalidInput
from ...interfaces.storage import Filters
from ...models import MAX_DIMS, Coordinate, HistoryEntry, Memory, MemoryType, matches_filters
from .db import Database
from .filters import pushdown
from .links import LINKS_SCHEMA, LinkMethods, chunks

__all__ = ["SQLiteStore"]

_BOX_DIMS = 4
_CLAMP = 1e38  # R*Tree values are 32-bit floats; a monotone clamp keeps the box a superset
_C = [f"c{i}" for i in range(MAX_DIMS)]
_BOX_COLS = ", ".join(f"x{d}a, x{d}b" for d in range(_BOX_DIMS))
_BOX_VALS = ", ".join(f"max(-{_CLAMP}, min(coalesce(new.c{d}, 0), {_CLAMP}))" for d in range(_BOX_DIMS) for _ in "ab")
_BOX_CHANGED = " OR ".join(["old.box_key IS NOT new.box_key"] + [f"old.c{d} IS NOT new.c{d}" for d in range(_BOX_DIMS)])

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS memories (
    rid INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    coordinate TEXT NOT NULL,
    ndim INTEGER NOT NULL CHECK (ndim BETWEEN 1 AND {MAX_DIMS}),
    box_key INTEGER NOT NULL,
    {", ".join(f"{c} REAL" for c in _C)},
    payload TEXT NOT NULL,
    memory_type TEXT NOT NULL CHECK (memory_type IN ('episodic', 'semantic')),
    importance REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL,
    UNIQUE (namespace, id)
);
CREATE INDEX IF NOT EXISTS memories_created ON memories (namespace, created_at, id);
CREATE INDEX IF NOT EXISTS memories_type ON memories (namespace, memory_type, created_at, id);
CREATE INDEX IF NOT EXISTS memories_updated ON memories (namespace, updated_at DESC, id);
CREATE INDEX IF NOT EXISTS memories_important ON memories (namespace, importance DESC, updated_at DESC, id);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_box USING rtree(rid, k0, k1, {_BOX_COLS});
CREATE TRIGGER IF NOT EXISTS memories_box_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_box VALUES (new.rid, new.box_key, new.box_key, {_BOX_VALS});
END;
CREATE TRIGGER IF NOT EXISTS memories_box_update AFTER UPDATE ON memories WHEN {_BOX_CHANGED} BEGIN
    INSERT OR REPLACE INTO memories_box VALUES (new.rid, new.box_key, new.box_key, {_BOX_VALS});
END;
CREATE TRIGGER IF NOT EXISTS memories_box_delete AFTER DELETE ON memories BEGIN
    DELETE FROM memories_box WHERE rid = old.rid;
END;
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    memory_id TEXT NOT NULL,
    coordinate TEXT NOT NULL,
    version INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (length(action) > 0),
    payload TEXT,
    memory_type TEXT CHECK (memory_type IS NULL OR memory_type IN ('episodic', 'semantic')),
    changed_at REAL NOT NULL,
    actor TEXT NOT NULL,
    changed_keys TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_memory ON history (namespace, memory_id, changed_at, seq);
CREATE INDEX IF NOT EXISTS history_namespace ON history (namespace, changed_at, seq);
{LINKS_SCHEMA}
"""

_MEMORY_COLS = "id, namespace, coordinate, payload, memory_type, created_at, updated_at, version"
_PUT = (
    f"INSERT INTO memories (namespace, id, coordinate, ndim, box_key, {', '.join(_C)}, payload, memory_type, "
    f"importance, created_at, updated_at, version) VALUES ({', '.join('?' * (MAX_DIMS + 11))}) "
    "ON CONFLICT (namespace, id) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}"
        for c in ["coordinate", "ndim", "box_key", *_C, "payload", "memory_type", "importance", "created_at",
                  "updated_at", "version"]
    )
)
_HISTORY_COLS = "namespace, memory_id, coordinate, version, action, payload, memory_type, changed_at, actor, " \
    "changed_keys"
_ADD_HISTORY = f"INSERT INTO history ({_HISTORY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def box_key(namespace: str, ndim: int) -> int:
    """The R*Tree key of ``(namespace, ndim)``: exact in a 32-bit float (< 2**24)."""
    return (zlib.crc32(namespace.encode()) % (1 << 19)) * 17 + ndim


def _memory(row: Sequence[Any]) -> Memory:
    return Memory(row[0], row[1], tuple(json.loads(row[2])), json.loads(row[3]), MemoryType(row[4]),
                  row[5], row[6], row[7])


def _history(row: Sequence[Any]) -> HistoryEntry:
    return HistoryEntry(
        row[0], row[1], tuple(json.loads(row[2])), row[3], row[4],
        None if row[5] is None else json.loads(row[5]), None if row[6] is None else MemoryType(row[6]),
        row[7], row[8], json.loads(row[9]),
    )


class SQLiteStore(LinkMethods):
    """Canonical memories, history and links in one SQLite database file.

    ``path`` is a file (created with its parent directory) or ``":memory:"``.
    ``database`` shares an open :class:`Database` (and its connection) instead.
    """

    name = "sqlite"

    def __init__(self, path: str | Path = ":memory:", *, database: Database | None = None) -> None:
        self._db = database.retain() if database is not None else Database(path)
        self._closed = False
        self._db.migrate("memories", SCHEMA)

    @property
    def database(self) -> Database:
        return self._db

    # --- writes -------------------------------------------------------------

    def _memory_rows(self, memories: Sequence[Memory]) -> list[tuple[Any, ...]]:
        rows = []
        for m in memories:
            n = len(m.coordinate)
            if not 1 <= n <= MAX_DIMS:
                raise InvalidInput("coordinate", f"must have 1 to {MAX_DIMS} values, got {n}")
            coords = [float(c) for c in m.coordinate]
            rows.append((
                m.namespace, m.id, _dumps(coords), n, box_key(m.namespace, n), *coords,
                *([None] * (MAX_DIMS - n)), _dumps(m.payload), MemoryType(m.memory_type).value,
                m.importance, m.created_at, m.updated_at, m.version,
            ))
        return rows

    def _history_rows(self, history: Sequence[HistoryEntry]) -> list[tuple[Any, ...]]:
        return [
            (h.namespace, h.memory_id, _dumps(list(h.coordinate)), h.version, h.action,
             None if h.payload is None else _dumps(h.payload),
             None if h.memory_type is None else MemoryType(h.memory_type).value,
             h.changed_at, h.actor, _dumps(list(h.changed_keys)))
            for h in history
        ]

    def put_many(self, memories: Sequence[Memory], history: Sequence[HistoryEntry]) -> None:
        with self._db.write() as conn:
            conn.executemany(_PUT, self._memory_rows(memories))
            conn.executemany(_ADD_HISTORY, self._history_rows(history))

    def delete_many(self, namespace: str, ids: Sequence[str], history: Sequence[HistoryEntry]) -> list[str]:
        wanted = list(dict.fromkeys(ids))
        with self._db.write() as conn:
            present: set[str] = set()
            for part in chunks(wanted):
                sql = f"SELECT id FROM memories WHERE namespace = ? AND id IN ({','.join('?' * len(part))})"
                present.update(row[0] for row in conn.execute(sql, (namespace, *part)))
            deleted = [i for i in wanted if i in present]
            conn.executemany("DELETE FROM memories WHERE namespace = ? AND id = ?", [(namespace, i) for i in deleted])
            self._remove_touching(conn, namespace, wanted)
            conn.executemany(_ADD_HISTORY, self._history_rows(history))
        return deleted

    # --- reads --------------------------------------------------------------

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Memory]:
        out: dict[str, Memory] = {}
        wanted = list(dict.fromkeys(ids))
        with self._db.read() as conn:
            for part in chunks(wanted):
                sql = (f"SELECT {_MEMORY_COLS} FROM memories "
                       f"WHERE namespace = ? AND id IN ({','.join('?' * len(part))})")
                out.update((row[0], _memory(row)) for row in conn.execute(sql, (namespace, *part)))
        return out

    def iter_memories(
        self, namespace: str, memory_type: MemoryType | None = None, page_size: int = 500
    ) -> Iterator[Memory]:
        base = f"SELECT {_MEMORY_COLS} FROM memories WHERE namespace = ?"
        params: list[Any] = [namespace]
        if memory_type is not None:
            base += " AND memory_type = ?"
            params.append(MemoryType(memory_type).value)
        size = max(1, page_size)
        after: tuple[float, str] | None = None
        while True:
            sql, args = base, list(params)
            if after is not None:
                sql += " AND (created_at, id) > (?, ?)"
                args.extend(after)
            with self._db.read() as conn:
                rows = conn.execute(sql + " ORDER BY created_at, id LIMIT ?", [*args, size]).fetchall()
            yield from (_memory(row) for row in rows)
            if len(rows) < size:
                return
            after = (rows[-1][5], rows[-1][0])

    def find_range(
        self, namespace: str, lo: Coordinate, hi: Coordinate, memory_type: MemoryType | None = None
    ) -> list[Memory]:
        if not lo or len(lo) != len(hi):
            raise InvalidInput("hi", f"must have as many values as lo ({len(lo)}), got {len(hi)}")
        n = len(lo)
        key = box_key(namespace, n)
        where = ["b.k0 <= ?", "b.k1 >= ?"]
        params: list[Any] = [key, key]
        for d in range(min(n, _BOX_DIMS)):
            where += [f"b.x{d}a <= ?", f"b.x{d}b >= ?"]
            params += [max(-_CLAMP, min(hi[d], _CLAMP)), max(-_CLAMP, min(lo[d], _CLAMP))]
        where += ["m.namespace = ?", "m.ndim = ?"]
        params += [namespace, n]
        for d in range(n):
            where.append(f"m.c{d} BETWEEN ? AND ?")
            params += [float(lo[d]), float(hi[d])]
        if memory_type is not None:
            where.append("m.memory_type = ?")
            params.append(MemoryType(memory_type).value)
        sql = (
            f"SELECT {', '.join('m.' + c for c in _MEMORY_COLS.split(', '))} "
            "FROM memories_box AS b CROSS JOIN memories AS m ON m.rid = b.rid "
            f"WHERE {' AND '.join(where)} ORDER BY {', '.join(f'm.c{d}' for d in range(n))}"
        )
        with self._db.read() as conn:
            return [_memory(row) for row in conn.execute(sql, params)]

    def filter_ids(
        self, namespace: str, filters: Filters | None, memory_type: MemoryType | None = None
    ) -> set[str]:
        sql = "SELECT id, payload FROM memories WHERE namespace = ?"
        params: list[Any] = [namespace]
        if memory_type is not None:
            sql += " AND memory_type = ?"
            params.append(MemoryType(memory_type).value)
        if not filters:
            with self._db.read() as conn:
                return {row[0] for row in conn.execute(sql.replace(", payload", ""), params)}
        condition, extra = pushdown(filters)
        with self._db.read() as conn:
            rows = conn.execute(f"{sql} AND {condition}", [*params, *extra]).fetchall()
        return {row[0] for row in rows if matches_filters(json.loads(row[1]), filters)}

    def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        sql = (f"SELECT {_HISTORY_COLS} FROM history WHERE namespace = ? AND memory_id = ? "
               "ORDER BY changed_at, seq")
        with self._db.read() as conn:
            return [_history(row) for row in conn.execute(sql, (namespace, memory_id))]

    def iter_history(self, namespace: str, page_size: int = 1000) -> Iterator[HistoryEntry]:
        after: tuple[float, int] = (float("-inf"), -1)
        sql = (f"SELECT {_HISTORY_COLS}, seq FROM history WHERE namespace = ? AND (changed_at, seq) > (?, ?) "
               "ORDER BY changed_at, seq LIMIT ?")
        while True:
            with self._db.read() as conn:
                rows = conn.execute(sql, (namespace, *after, page_size)).fetchall()
            yield from (_history(row) for row in rows)
            if len(rows) < page_size:
                return
            after = (rows[-1][7], rows[-1][10])

    def _top(self, namespace: str, n: int, memory_type: MemoryType | None, order: str) -> list[Memory]:
        if n <= 0:
            return []
        sql = f"SELECT {_MEMORY_COLS} FROM memories WHERE namespace = ?"
        params: list[Any] = [namespace]
        if memory_type is not None:
            sql += " AND memory_type = ?"
            params.append(MemoryType(memory_type).value)
        with self._db.read() as conn:
            return [_memory(row) for row in conn.execute(f"{sql} ORDER BY {order} LIMIT ?", [*params, n])]

    def recent(self, namespace: str, n: int, memory_type: MemoryType | None = None) -> list[Memory]:
        """Newest ``updated_at`` first; ties by id."""
        return self._top(namespace, n, memory_type, "updated_at DESC, id")

    def important(self, namespace: str, n: int, memory_type: MemoryType | None = None) -> list[Memory]:
        """Highest importance first; ties: newest ``updated_at``, then id."""
        return self._top(namespace, n, memory_type, "importance DESC, updated_at DESC, id")

    def counts(self, namespace: str) -> dict[str, int]:
        out = {"total": 0, "episodic": 0, "semantic": 0}
        with self._db.read() as conn:
            sql = "SELECT memory_type, count(*) FROM memories WHERE namespace = ? GROUP BY memory_type"
            for kind, number in conn.execute(sql, (namespace,)):
                out[kind] = int(number)
        out["total"] = out["episodic"] + out["semantic"]
        return out

    def namespaces(self) -> list[str]:
        with self._db.read() as conn:
            return [row[0] for row in conn.execute("SELECT DISTINCT namespace FROM memories ORDER BY namespace")]

    def health(self) -> None:
        self._db.health()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()
