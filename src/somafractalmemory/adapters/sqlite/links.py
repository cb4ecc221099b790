"""The ``IGraphStore`` half of ``SQLiteStore``: the ``links`` table.

An edge is one row, unique on ``(namespace, from_id, to_id, link_type)``;
adding it again updates weight, metadata and coordinates and keeps its
``created_at`` and its place (``seq``). ``neighbors`` orders by weight
ascending (a weight is a path cost, so the closest come first), then
``created_at``, then ``seq``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from ...errors import InvalidInput
from ...models import Link, MemoryEvent
from .db import Database, loads

__all__ = ["LINKS_SCHEMA", "LinkMethods", "chunks"]

LINKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS links (
    seq INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    from_id TEXT NOT NULL,
    to_id TEXT NOT NULL,
    link_type TEXT NOT NULL CHECK (length(link_type) > 0),
    weight REAL NOT NULL,
    metadata TEXT NOT NULL,
    from_coord TEXT NOT NULL,
    to_coord TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (namespace, from_id, to_id, link_type)
);
CREATE INDEX IF NOT EXISTS links_to ON links (namespace, to_id);
"""

_COLUMNS = "namespace, from_id, to_id, from_coord, to_coord, link_type, weight, metadata, created_at, seq"
_UPSERT = (
    "INSERT INTO links (namespace, from_id, to_id, from_coord, to_coord, link_type, weight, metadata, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, from_id, to_id, link_type) "
    "DO UPDATE SET weight = excluded.weight, metadata = excluded.metadata, "
    "from_coord = excluded.from_coord, to_coord = excluded.to_coord"
)


def chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _row(link: Link) -> tuple[Any, ...]:
    if not link.link_type:
        raise InvalidInput("link_type", "must be a non-empty string")
    return (
        link.namespace,
        link.from_id,
        link.to_id,
        json.dumps(list(link.from_coord)),
        json.dumps(list(link.to_coord)),
        link.link_type,
        float(link.weight),
        json.dumps(link.metadata, ensure_ascii=False),
        float(link.created_at),
    )


def _link(row: sqlite3.Row | tuple[Any, ...]) -> Link:
    return Link(
        namespace=row[0],
        from_id=row[1],
        to_id=row[2],
        from_coord=tuple(loads(row[3])),
        to_coord=tuple(loads(row[4])),
        link_type=row[5],
        weight=row[6],
        metadata=loads(row[7]),
        created_at=row[8],
    )


class LinkMethods:
    """Graph methods over ``self._db``; mixed into ``SQLiteStore``."""

    _db: Database

    def add_links(self, links: Sequence[Link], events: Sequence[MemoryEvent] = ()) -> None:
        rows = [_row(link) for link in links]
        with self._db.write() as conn:
            conn.executemany(_UPSERT, rows)

    def remove_links(
        self,
        namespace: str,
        from_id: str,
        to_id: str,
        link_type: str | None = None,
        events: Sequence[MemoryEvent] = (),
    ) -> int:
        sql = "DELETE FROM links WHERE namespace = ? AND from_id = ? AND to_id = ?"
        params: list[Any] = [namespace, from_id, to_id]
        if link_type is not None:
            sql += " AND link_type = ?"
            params.append(link_type)
        with self._db.write() as conn:
            return conn.execute(sql, params).rowcount

    @staticmethod
    def _remove_touching(conn: sqlite3.Connection, namespace: str, ids: Sequence[str]) -> int:
        removed = 0
        for column in ("from_id", "to_id"):
            cur = conn.executemany(
                f"DELETE FROM links WHERE namespace = ? AND {column} = ?", [(namespace, i) for i in ids]
            )
            removed += cur.rowcount
        return removed

    def remove_nodes(self, namespace: str, ids: Sequence[str]) -> int:
        with self._db.write() as conn:
            return self._remove_touching(conn, namespace, list(dict.fromkeys(ids)))

    def neighbors(
        self,
        namespace: str,
        memory_id: str,
        link_type: str | None = None,
        direction: str = "out",
        limit: int | None = None,
    ) -> list[Link]:
        ends = {"out": ("from_id",), "in": ("to_id",), "both": ("from_id", "to_id")}.get(direction)
        if ends is None:
            raise InvalidInput("direction", f"must be 'out', 'in' or 'both', got {direction!r}")
        if limit is not None and limit <= 0:
            return []
        parts: list[str] = []
        params: list[Any] = []
        for end in ends:
            part = f"SELECT {_COLUMNS} FROM links WHERE namespace = ? AND {end} = ?"
            params += [namespace, memory_id]
            if link_type is not None:
                part += " AND link_type = ?"
                params.append(link_type)
            parts.append(part)
        sql = " UNION ".join(parts) + " ORDER BY weight, created_at, seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._db.read() as conn:
            return [_link(row) for row in conn.execute(sql, params)]

    def iter_links(self, namespace: str, page_size: int = 1000) -> Iterator[Link]:
        """Every edge, in insertion order, fetched a page at a time."""
        last = -1
        while True:
            with self._db.read() as conn:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM links WHERE namespace = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (namespace, last, page_size),
                ).fetchall()
            yield from (_link(row) for row in rows)
            if len(rows) < page_size:
                return
            last = rows[-1][9]

    def count(self, namespace: str) -> int:
        with self._db.read() as conn:
            return int(
                conn.execute("SELECT count(*) FROM links WHERE namespace = ?", (namespace,)).fetchone()[0]
            )
