"""Embedded durable store: ``IKeyValueStore`` and ``IGraphStore`` in one SQLite file.

Tables: ``memories`` (one row per memory: coordinate as JSON and as columns
``c0``..``c15``, payload as JSON, type, importance, timestamps, version),
``history`` (append-only), ``links`` (see ``links.py``) and the change feed
``memory_changes``, filled by triggers (see ``changes.py``). Every
``put_many``/``delete_many`` is one transaction; ``delete_many`` removes the
links touching the ids in the same transaction.

Range queries are served by a composite B-tree index on ``(namespace, ndim,
c0, c1, c2, c3)``: the database seeks to the namespace and dimensionality,
scans the ``c0`` interval and tests ``c1``..``c3`` inside the index, and
reads a row only when those match; the exact inclusive test of every
dimension follows in the same statement. (An R*Tree would prune on more
dimensions but costs about four times as much per insert and stores 32-bit
floats; bulk ingest matters more here.)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic_core import from_json, to_json

from ...errors import InvalidInput, WriteConflict
from ...interfaces.storage import Filters
from ...models import MAX_DIMS, Coordinate, HistoryEntry, Memory, MemoryEvent, MemoryType, matches_filters
from .changes import CHANGES_SCHEMA, CHANGES_VERSION, FLOOR_SCHEMA, FLOOR_VERSION, ChangeFeedMethods
from .db import Database, loads
from .filters import pushdown
from .links import LINKS_SCHEMA, LinkMethods, chunks

__all__ = ["SQLiteStore"]

_INDEXED_DIMS = 4
_C = [f"c{i}" for i in range(MAX_DIMS)]

SCHEMA_VERSION = 1
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS memories (
    rid INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    coordinate TEXT NOT NULL,
    ndim INTEGER NOT NULL CHECK (ndim BETWEEN 1 AND {MAX_DIMS}),
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
CREATE INDEX IF NOT EXISTS memories_type ON memories (namespace, memory_type);
CREATE INDEX IF NOT EXISTS memories_updated ON memories (namespace, updated_at);
CREATE INDEX IF NOT EXISTS memories_important ON memories (namespace, importance, updated_at);
CREATE INDEX IF NOT EXISTS memories_box ON memories (namespace, ndim, {", ".join(_C[:_INDEXED_DIMS])});
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY,
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
CREATE INDEX IF NOT EXISTS history_memory ON history (namespace, memory_id, changed_at);
CREATE INDEX IF NOT EXISTS history_namespace ON history (namespace, changed_at);
{LINKS_SCHEMA}
"""

# The columns a Memory is built from; the namespace is the one queried.
_MEMORY_COLS = "id, coordinate, payload, memory_type, created_at, updated_at, version"
_GET_ONE = f"SELECT {_MEMORY_COLS} FROM memories WHERE namespace = ? AND id = ?"
# Any number of ids in one statement text (one prepared statement, no chunks,
# rows in the order asked): a JSON array of ids, each looked up in the
# (namespace, id) index.
_GET_MANY = (
    f"SELECT {', '.join(f'm.{c}' for c in _MEMORY_COLS.split(', '))} "
    "FROM json_each(?) AS wanted CROSS JOIN memories AS m ON m.namespace = ? AND m.id = wanted.value"
)
_encode_ids = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def _ids_json(ids: list[str] | tuple[str, ...]) -> str:
    """The ids as a JSON array (``pydantic_core.to_json``: 4 times faster than
    ``json``; an id it cannot encode, a lone surrogate, matches no row anyway)."""
    try:
        return to_json(ids).decode()
    except ValueError:
        return _encode_ids(ids)


def _put_sql(n: int) -> str:
    """The upsert of memories with ``n`` dimensions: only ``c0``..``c{n-1}`` are
    bound (the other columns stay NULL; an id's coordinate never changes)."""
    cols = ["coordinate", "ndim", *_C[:n], "payload", "memory_type", "importance", "created_at",
            "updated_at", "version"]  # fmt: skip
    marks = ", ".join("?" * (len(cols) + 2))
    return (
        f"INSERT INTO memories (namespace, id, {', '.join(cols)}) VALUES ({marks}) "
        f"ON CONFLICT (namespace, id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in cols)}"
    )


_PUT = {n: _put_sql(n) for n in range(1, MAX_DIMS + 1)}
_HISTORY_COLS = (
    "namespace, memory_id, coordinate, version, action, payload, memory_type, changed_at, actor, changed_keys"
)
_ADD_HISTORY = f"INSERT INTO history ({_HISTORY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_TYPES = {t: t.value for t in MemoryType} | {t.value: t.value for t in MemoryType}
_MEMORY_TYPES = {t.value: t for t in MemoryType}

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _coord_json(coord: Sequence[float]) -> str:
    return "[" + ",".join(map(repr, coord)) + "]"  # canonical floats: repr is their JSON


def _type(value: Any) -> str:
    try:
        return _TYPES[value]
    except (KeyError, TypeError):
        raise InvalidInput("memory_type", f"must be 'episodic' or 'semantic', got {value!r}") from None


def _memory(namespace: str, row: Sequence[Any]) -> Memory:
    """A row of ``_MEMORY_COLS`` as a memory."""
    return Memory(
        row[0],
        namespace,
        tuple(loads(row[1])),
        loads(row[2]),
        MemoryType(row[3]),
        row[4],
        row[5],
        row[6],
    )


def _memories(namespace: str, rows: list[Any]) -> list[Memory]:
    """Rows of ``_MEMORY_COLS`` as memories: one comprehension calling only
    the JSON decoder per row; a row it refuses sends all through ``_memory``."""
    types = _MEMORY_TYPES
    try:
        return [
            Memory(mid, namespace, tuple(from_json(coord)), from_json(payload), types[kind], created,
                   updated, version)
            for mid, coord, payload, kind, created, updated, version in rows
        ]  # fmt: skip
    except (ValueError, KeyError):
        return [_memory(namespace, row) for row in rows]


def _history(row: Sequence[Any]) -> HistoryEntry:
    return HistoryEntry(
        row[0],
        row[1],
        tuple(loads(row[2])),
        row[3],
        row[4],
        None if row[5] is None else loads(row[5]),
        None if row[6] is None else MemoryType(row[6]),
        row[7],
        row[8],
        loads(row[9]),
    )


def _range_sql(n: int, typed: bool) -> str:
    """The box query over ``n`` dimensions, optionally of one memory type.

    Equality on (namespace, ndim), a range on c0 and in-index tests on
    c1..c3 use ``memories_box``; the remaining dimensions are tested on the
    rows it yields."""
    where = ["namespace = ?", "ndim = ?", *(f"c{d} BETWEEN ? AND ?" for d in range(n))]
    if typed:
        where.append("memory_type = ?")
    return (
        f"SELECT {_MEMORY_COLS} FROM memories INDEXED BY memories_box WHERE {' AND '.join(where)} "
        f"ORDER BY {', '.join(_C[:n])}"
    )


_RANGE = {(n, typed): _range_sql(n, typed) for n in range(1, MAX_DIMS + 1) for typed in (False, True)}


class SQLiteStore(LinkMethods, ChangeFeedMethods):
    """Canonical memories, history and links in one SQLite database file.

    ``path`` is a file (created with its parent directory) or ``":memory:"``.
    ``database`` shares an open :class:`Database` (and its connection) instead.
    """

    name = "sqlite"

    def __init__(self, path: str | Path = ":memory:", *, database: Database | None = None) -> None:
        self._db = database.retain() if database is not None else Database(path)
        self._closed = False
        try:
            self._db.migrate("memories", SCHEMA_VERSION, SCHEMA)
            self._db.migrate("changes", CHANGES_VERSION, CHANGES_SCHEMA)  # the change feed (changes.py)
            self._db.migrate("change_floor", FLOOR_VERSION, FLOOR_SCHEMA)
        except BaseException:
            self._db.close()
            raise

    @property
    def database(self) -> Database:
        return self._db

    # --- writes -------------------------------------------------------------

    @staticmethod
    def _memory_rows(memories: Sequence[Memory]) -> tuple[dict[int, list[tuple[Any, ...]]], dict[int, str]]:
        """The rows to upsert by number of dimensions, and the JSON of each
        payload and coordinate by ``id()`` (reused for the history rows)."""
        rows: dict[int, list[tuple[Any, ...]]] = {}
        known: dict[int, str] = {}
        for m in memories:
            n = len(m.coordinate)
            if not 1 <= n <= MAX_DIMS:
                raise InvalidInput("coordinate", f"must have 1 to {MAX_DIMS} values, got {n}")
            payload = known[id(m.payload)] = _dumps(m.payload)
            coord = known[id(m.coordinate)] = _coord_json(m.coordinate)
            rows.setdefault(n, []).append(
                (m.namespace, m.id, coord, n, *m.coordinate, payload,
                 _type(m.memory_type), m.importance, m.created_at, m.updated_at, m.version)
            )  # fmt: skip
        return rows, known

    @staticmethod
    def _history_rows(history: Sequence[HistoryEntry], known: dict[int, str]) -> list[tuple[Any, ...]]:
        return [
            (h.namespace, h.memory_id, known.get(id(h.coordinate)) or _coord_json(h.coordinate), h.version,
             h.action, None if h.payload is None else known.get(id(h.payload)) or _dumps(h.payload),
             None if h.memory_type is None else _type(h.memory_type),
             h.changed_at, h.actor, _dumps(h.changed_keys) if h.changed_keys else "[]")
            for h in history
        ]  # fmt: skip

    def _append_history(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Append history rows inside the caller's transaction."""
        conn.executemany(_ADD_HISTORY, rows)

    def put_many(
        self,
        memories: Sequence[Memory],
        history: Sequence[HistoryEntry],
        events: Sequence[MemoryEvent] = (),
        expect_previous: bool = False,
    ) -> None:
        rows, known = self._memory_rows(memories)  # built before taking the lock
        history_rows = self._history_rows(history, known)
        with self._db.write() as conn:
            if expect_previous:  # under the write lock: no other process writes in between
                _check_previous(conn, memories)
            for n, group in rows.items():
                conn.executemany(_PUT[n], group)
            self._append_history(conn, history_rows)

    def delete_many(
        self,
        namespace: str,
        ids: Sequence[str],
        history: Sequence[HistoryEntry],
        events: Sequence[MemoryEvent] = (),
    ) -> list[str]:
        wanted = list(dict.fromkeys(ids))
        history_rows = self._history_rows(history, {})
        with self._db.write() as conn:
            present: set[str] = set()
            for part in chunks(wanted):
                sql = f"SELECT id FROM memories WHERE namespace = ? AND id IN ({','.join('?' * len(part))})"
                present.update(row[0] for row in conn.execute(sql, (namespace, *part)))
            deleted = [i for i in wanted if i in present]
            conn.executemany(
                "DELETE FROM memories WHERE namespace = ? AND id = ?", [(namespace, i) for i in deleted]
            )
            self._remove_touching(conn, namespace, wanted)
            self._append_history(conn, history_rows)
        return deleted

    # --- reads --------------------------------------------------------------

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Memory]:
        if not isinstance(ids, (list, tuple)):
            ids = list(ids)
        if len(ids) == 1:
            rows = self._db.fetch(_GET_ONE, (namespace, ids[0]))
        elif ids:  # a repeated id only finds its row again
            rows = self._db.fetch(_GET_MANY, (_ids_json(ids), namespace))
        else:
            return {}
        return {m.id: m for m in _memories(namespace, rows)}

    def iter_memories(
        self, namespace: str, memory_type: MemoryType | None = None, page_size: int = 500
    ) -> Iterator[Memory]:
        base = f"SELECT {_MEMORY_COLS} FROM memories WHERE namespace = ?"
        params: list[Any] = [namespace]
        if memory_type is not None:
            base += " AND memory_type = ?"
            params.append(_type(memory_type))
        size = max(1, page_size)
        after: tuple[float, str] | None = None
        while True:
            sql, args = base, list(params)
            if after is not None:
                sql += " AND (created_at, id) > (?, ?)"
                args.extend(after)
            rows = self._db.fetch(sql + " ORDER BY created_at, id LIMIT ?", [*args, size])
            yield from _memories(namespace, rows)
            if len(rows) < size:
                return
            after = (rows[-1][4], rows[-1][0])

    def find_range(
        self, namespace: str, lo: Coordinate, hi: Coordinate, memory_type: MemoryType | None = None
    ) -> list[Memory]:
        if not lo or len(lo) != len(hi):
            raise InvalidInput("hi", f"must have as many values as lo ({len(lo)}), got {len(hi)}")
        n = len(lo)
        if n > MAX_DIMS:
            return []  # no memory has more dimensions
        params: list[Any] = [namespace, n]
        for low, high in zip(lo, hi, strict=True):
            params += (float(low), float(high))
        if memory_type is not None:
            params.append(_type(memory_type))
        return _memories(namespace, self._db.fetch(_RANGE[n, memory_type is not None], params))

    def filter_ids(
        self, namespace: str, filters: Filters | None, memory_type: MemoryType | None = None
    ) -> set[str]:
        sql = "SELECT id, payload FROM memories WHERE namespace = ?"
        params: list[Any] = [namespace]
        if memory_type is not None:
            sql += " AND memory_type = ?"
            params.append(_type(memory_type))
        if not filters:
            with self._db.read() as conn:
                return {row[0] for row in conn.execute(sql.replace(", payload", ""), params)}
        condition, extra = pushdown(filters)
        with self._db.read() as conn:
            rows = conn.execute(f"{sql} AND {condition}", [*params, *extra]).fetchall()
        return {row[0] for row in rows if matches_filters(loads(row[1]), filters)}

    def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        sql = (
            f"SELECT {_HISTORY_COLS} FROM history WHERE namespace = ? AND memory_id = ? "
            "ORDER BY changed_at, seq"
        )
        return [_history(row) for row in self._db.fetch(sql, (namespace, memory_id))]

    def iter_history(self, namespace: str, page_size: int = 1000) -> Iterator[HistoryEntry]:
        after: tuple[float, int] = (float("-inf"), -1)
        sql = (
            f"SELECT {_HISTORY_COLS}, seq FROM history WHERE namespace = ? AND (changed_at, seq) > (?, ?) "
            "ORDER BY changed_at, seq LIMIT ?"
        )
        while True:
            rows = self._db.fetch(sql, (namespace, *after, page_size))
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
            params.append(_type(memory_type))
        return _memories(namespace, self._db.fetch(f"{sql} ORDER BY {order} LIMIT ?", [*params, n]))

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
            return [
                row[0] for row in conn.execute("SELECT DISTINCT namespace FROM memories ORDER BY namespace")
            ]

    def health(self) -> None:
        self._db.health()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()


def _check_previous(conn: sqlite3.Connection, memories: Sequence[Memory]) -> None:
    """``put_many``'s ``expect_previous``, inside its write transaction."""
    expected = {(m.namespace, m.id): m.version - 1 for m in memories}  # the last of an id counts
    by_namespace: dict[str, list[str]] = {}
    for namespace, memory_id in expected:
        by_namespace.setdefault(namespace, []).append(memory_id)
    stored: dict[tuple[str, str], int] = {}
    for namespace, ids in by_namespace.items():
        for part in chunks(ids):
            marks = ",".join("?" * len(part))
            sql = f"SELECT id, version FROM memories WHERE namespace = ? AND id IN ({marks})"
            stored.update(((namespace, i), v) for i, v in conn.execute(sql, (namespace, *part)))
    for key, version in expected.items():
        if stored.get(key, 0) != version:
            raise WriteConflict(f"memory {key[1]} is at version {stored.get(key, 0)}, not {version}")
