"""The change feed of ``PostgresStore``: ``memory_changes``, filled by triggers.

Statement-level triggers on ``memories`` (migration 5) append one row per
memory inserted, updated or deleted, inside the writing transaction, with
that transaction's id (``xid``, an ``xid8``). Identity values (``seq``) are
handed out in call order, not commit order, so a reader that advanced past
``seq = n`` could later see a smaller ``seq`` commit. The cursor is
therefore a transaction id: a reader only takes rows whose transaction is
older than every transaction still running (``xid <
pg_snapshot_xmin(pg_current_snapshot())``); all of those are finished, and
none can appear later below them. A long-running writing transaction
anywhere in the cluster delays what readers see (never what they get).

``prune_changes`` deletes whole settled transactions below the newest
``keep`` changes and records the newest one deleted in
``memory_change_floor``: a reader whose cursor is below it rebuilds.
"""

from __future__ import annotations

from ...interfaces.storage import Change
from .pool import PostgresPool

__all__ = ["HEAD_QUERY", "SINCE_QUERY", "ChangeFeedTable"]

_SETTLED = "xid < pg_snapshot_xmin(pg_current_snapshot())"
# The text of an ``xid8`` is selected under another name: a bare ``ORDER BY
# xid`` would otherwise sort by that output column - as text ("999" after
# "1000"), and without the index.
_COLUMNS = "seq, xid::text AS xid_text, namespace, id, version, action"
#: The newest settled transaction (``change_seq``): a backward scan of the xid index.
HEAD_QUERY = f"SELECT xid::text AS xid_text FROM memory_changes WHERE {_SETTLED} ORDER BY xid DESC LIMIT 1"
#: The settled changes after a transaction (``changes_since``), in xid order.
SINCE_QUERY = (
    f"SELECT {_COLUMNS} FROM memory_changes WHERE xid > %s::text::xid8 AND {_SETTLED} "
    "ORDER BY xid, seq LIMIT %s"
)


#: The (keep+1)-th newest settled change's transaction: it and everything below go.
_CUT_QUERY = (
    f"SELECT xid::text AS xid_text FROM memory_changes WHERE {_SETTLED} "
    "ORDER BY xid DESC, seq DESC LIMIT 1 OFFSET %s"
)


def _change(row: tuple[object, ...]) -> tuple[int, Change]:
    xid = int(str(row[1]))
    return xid, Change(xid, str(row[2]), str(row[3]), int(str(row[4])), str(row[5]))


class ChangeFeedTable:
    """The change-feed methods of ``IKeyValueStore`` on ``memory_changes``.

    A ``Change``'s ``seq`` is its transaction id (the cursor); changes of
    one transaction share it and keep their order.
    """

    _pool: PostgresPool
    _feed_id: str | None = None

    def change_feed_id(self) -> str:
        if self._feed_id is None:
            with self._pool.connection() as conn:
                row = conn.execute("SELECT id FROM memory_change_feed LIMIT 1").fetchone()
            self._feed_id = str(row[0]) if row else ""
        return self._feed_id

    def change_seq(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(HEAD_QUERY).fetchone()
        return int(row[0]) if row else 0

    def changes_since(self, seq: int, limit: int = 1000) -> tuple[int, list[Change]]:
        size = max(1, int(limit))
        with self._pool.connection() as conn:
            rows = conn.execute(SINCE_QUERY, [str(int(seq)), size]).fetchall()
            found = [_change(row) for row in rows]
            if len(found) == size:  # never split a transaction: take the last one whole
                last = found[-1][0]
                found = [f for f in found if f[0] != last]
                rest = conn.execute(
                    f"SELECT {_COLUMNS} FROM memory_changes WHERE xid = %s::text::xid8 ORDER BY seq",
                    [str(last)],
                ).fetchall()
                found += [_change(row) for row in rest]
        changes = [c for _, c in found]
        return (found[-1][0] if found else int(seq)), changes

    def change_floor(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT floor::text FROM memory_change_floor").fetchone()
        return int(row[0]) if row else 0

    def prune_changes(self, keep: int) -> int:
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(_CUT_QUERY, [max(1, int(keep))]).fetchone()
            if row is None:
                return 0
            cut = str(row[0])
            dropped = conn.execute("DELETE FROM memory_changes WHERE xid <= %s::text::xid8", [cut]).rowcount
            raise_floor = "UPDATE memory_change_floor SET floor = %s::text::xid8 WHERE floor < %s::text::xid8"
            conn.execute(raise_floor, [cut, cut])
        return int(dropped)
