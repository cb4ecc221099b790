"""The ``IGraphStore`` half of ``PostgresStore``: links between memories.

An edge is keyed by ``(namespace, from_id, to_id, link_type)``. Adding it
again keeps its creation time and arrival order (``seq``) and replaces its
weight, metadata and coordinates. ``neighbors`` orders by weight ascending
(a weight is a path cost), then ``created_at``, then arrival, like the
in-process adapter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from psycopg import sql

from ...errors import InvalidInput
from ...models import Link, MemoryEvent
from .outbox import insert_events
from .pool import PostgresPool
from .rows import coordinate_text, dumps

__all__ = ["LinkTable"]

_COLUMNS = "namespace, from_id, to_id, from_coord, to_coord, link_type, weight, metadata, created_at"

_ADD = """
INSERT INTO links (namespace, from_id, to_id, link_type, from_coord, to_coord, weight, metadata, created_at)
SELECT x.namespace, x.from_id, x.to_id, x.link_type, x.from_coord::float8[], x.to_coord::float8[],
       x.weight, coalesce(x.metadata, '{}'), x.created_at
FROM ROWS FROM (json_to_recordset(%s::json) AS (namespace text, from_id text, to_id text, link_type text,
     from_coord text, to_coord text, weight float8, metadata jsonb, created_at float8))
     WITH ORDINALITY AS x(namespace, from_id, to_id, link_type, from_coord, to_coord, weight, metadata,
                          created_at, ord)
ORDER BY x.ord
ON CONFLICT (namespace, from_id, to_id, link_type) DO UPDATE SET
    from_coord = EXCLUDED.from_coord, to_coord = EXCLUDED.to_coord,
    weight = EXCLUDED.weight, metadata = EXCLUDED.metadata
"""

_DIRECTIONS = {
    "out": "from_id = %(node)s",
    "in": "to_id = %(node)s",
    "both": "(from_id = %(node)s OR to_id = %(node)s)",
}


def _link(row: Sequence[Any]) -> Link:
    return Link(
        namespace=row[0],
        from_id=row[1],
        to_id=row[2],
        from_coord=tuple(row[3]),
        to_coord=tuple(row[4]),
        link_type=row[5],
        weight=row[6],
        metadata=row[7],
        created_at=row[8],
    )


class LinkTable:
    """Persisted edges; needs ``self._pool``."""

    _pool: PostgresPool

    def add_links(self, links: Sequence[Link], events: Sequence[MemoryEvent] = ()) -> None:
        merged: dict[tuple[str, str, str, str], Link] = {}
        for link in links:
            if not link.link_type:
                raise InvalidInput("link_type", "must be a non-empty string")
            key = (link.namespace, link.from_id, link.to_id, link.link_type)
            first = merged.get(key)
            if first is not None:  # a repeat in one batch replaces, keeping the first's creation
                link = Link(
                    link.namespace,
                    link.from_id,
                    link.to_id,
                    link.from_coord,
                    link.to_coord,
                    link.link_type,
                    link.weight,
                    link.metadata,
                    first.created_at,
                )
            merged[key] = link
        batch = list(merged.values())
        if not batch:
            return
        rows = dumps(
            [
                {
                    "namespace": link.namespace,
                    "from_id": link.from_id,
                    "to_id": link.to_id,
                    "link_type": link.link_type,
                    "from_coord": coordinate_text(link.from_coord, "link.from_coord"),
                    "to_coord": coordinate_text(link.to_coord, "link.to_coord"),
                    "weight": float(link.weight),
                    "metadata": link.metadata or {},
                    "created_at": float(link.created_at),
                }
                for link in batch
            ]
        )
        with self._pool.connection() as conn:
            if not events:
                conn.execute(_ADD, [rows])
                return
            # the link and its events commit together, pipelined: one round trip
            with conn.pipeline(), conn.transaction():
                conn.execute(_ADD, [rows])
                insert_events(conn, events)

    def remove_links(
        self,
        namespace: str,
        from_id: str,
        to_id: str,
        link_type: str | None = None,
        events: Sequence[MemoryEvent] = (),
    ) -> int:
        query = "DELETE FROM links WHERE namespace = %s AND from_id = %s AND to_id = %s"
        params: list[Any] = [namespace, from_id, to_id]
        if link_type is not None:
            query += " AND link_type = %s"
            params.append(link_type)
        with self._pool.connection() as conn:
            if not events:
                return conn.execute(query.encode(), params).rowcount
            with conn.transaction():
                removed = conn.execute(query.encode(), params).rowcount
                if removed:
                    insert_events(conn, events)
                return removed

    def remove_nodes(self, namespace: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with self._pool.connection() as conn:
            cur = conn.execute(
                "DELETE FROM links WHERE namespace = %(ns)s"
                " AND (from_id = ANY(%(ids)s::text[]) OR to_id = ANY(%(ids)s::text[]))",
                {"ns": namespace, "ids": list(ids)},
            )
            return cur.rowcount

    def neighbors(
        self,
        namespace: str,
        memory_id: str,
        link_type: str | None = None,
        direction: str = "out",
        limit: int | None = None,
    ) -> list[Link]:
        where = _DIRECTIONS.get(direction)
        if where is None:
            raise InvalidInput("direction", f"must be 'out', 'in' or 'both', got {direction!r}")
        if limit is not None and limit <= 0:
            return []
        params: dict[str, Any] = {"ns": namespace, "node": memory_id, "limit": limit}
        type_sql = ""
        if link_type is not None:
            type_sql = " AND link_type = %(type)s"
            params["type"] = link_type
        query = sql.SQL(
            "SELECT "
            + _COLUMNS
            + " FROM links WHERE namespace = %(ns)s AND "
            + where
            + type_sql
            + " ORDER BY weight, created_at, seq LIMIT %(limit)s"
        )
        with self._pool.connection() as conn:
            return [_link(row) for row in conn.execute(query, params).fetchall()]

    def iter_links(self, namespace: str, page_size: int = 1000) -> Iterator[Link]:
        """Every edge, in arrival order, fetched a page at a time."""
        query = f"SELECT {_COLUMNS}, seq FROM links WHERE namespace = %s AND seq > %s ORDER BY seq LIMIT %s"
        after = 0
        while True:
            with self._pool.connection() as conn:
                rows = conn.execute(query.encode(), [namespace, after, page_size]).fetchall()
            for row in rows:
                yield _link(row)
            if len(rows) < page_size:
                return
            after = rows[-1][9]

    def count(self, namespace: str) -> int:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM links WHERE namespace = %s", [namespace]).fetchone()
        return int(row[0]) if row else 0
