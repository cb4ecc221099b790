"""The change feed of ``SQLiteStore``: one row per memory written or deleted.

Triggers on ``memories`` append to ``memory_changes`` inside the writing
transaction, so the feed holds exactly the committed writes, whoever made
them (any process, any code path: store, delete, import). SQLite commits one
writer at a time (``BEGIN IMMEDIATE``), so ``seq`` (the rowid, never reused:
rows are never deleted) grows in commit order: a reader that saw cursor
``n`` has seen every change up to ``n``. ``memory_change_feed`` holds one
random id naming this database's feed.
"""

from __future__ import annotations

from ...interfaces.storage import Change
from .db import Database

__all__ = ["CHANGES_SCHEMA", "CHANGES_VERSION", "FLOOR_SCHEMA", "FLOOR_VERSION", "ChangeFeedMethods"]

CHANGES_VERSION = 1
CHANGES_SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_changes (
    seq INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    action TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS memory_change_feed (id TEXT NOT NULL);
INSERT INTO memory_change_feed (id)
    SELECT lower(hex(randomblob(16))) WHERE NOT EXISTS (SELECT 1 FROM memory_change_feed);
CREATE TRIGGER IF NOT EXISTS memories_change_created AFTER INSERT ON memories BEGIN
    INSERT INTO memory_changes (namespace, id, version, action)
    VALUES (new.namespace, new.id, new.version, 'created');
END;
CREATE TRIGGER IF NOT EXISTS memories_change_updated AFTER UPDATE ON memories BEGIN
    INSERT INTO memory_changes (namespace, id, version, action)
    VALUES (new.namespace, new.id, new.version, 'updated');
END;
CREATE TRIGGER IF NOT EXISTS memories_change_deleted AFTER DELETE ON memories BEGIN
    INSERT INTO memory_changes (namespace, id, version, action)
    VALUES (old.namespace, old.id, old.version, 'deleted');
END;
"""

#: The feed's floor (``prune_changes``), a component of its own so files
#: written before it existed open without a schema change.
FLOOR_VERSION = 1
FLOOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_change_floor (floor INTEGER NOT NULL);
INSERT INTO memory_change_floor (floor) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM memory_change_floor);
"""


class ChangeFeedMethods:
    """The change-feed methods of ``IKeyValueStore`` on ``memory_changes``."""

    _db: Database
    _feed_id: str | None = None

    def change_feed_id(self) -> str:
        if self._feed_id is None:
            with self._db.read() as conn:
                row = conn.execute("SELECT id FROM memory_change_feed LIMIT 1").fetchone()
            self._feed_id = str(row[0])
        return self._feed_id

    def change_seq(self) -> int:
        with self._db.read() as conn:
            row = conn.execute("SELECT max(seq) FROM memory_changes").fetchone()
        return int(row[0] or 0)

    def changes_since(self, seq: int, limit: int = 1000) -> tuple[int, list[Change]]:
        sql = (
            "SELECT seq, namespace, id, version, action FROM memory_changes "
            "WHERE seq > ? ORDER BY seq LIMIT ?"
        )
        with self._db.read() as conn:
            rows = conn.execute(sql, (int(seq), max(1, int(limit)))).fetchall()
        changes = [Change(int(r[0]), r[1], r[2], int(r[3]), r[4]) for r in rows]
        return (changes[-1].seq if changes else int(seq)), changes

    def change_floor(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute("SELECT floor FROM memory_change_floor").fetchone()[0])

    def prune_changes(self, keep: int) -> int:
        # at least the newest change stays: seq is the rowid, and an empty
        # table would hand out 1 again
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT seq FROM memory_changes ORDER BY seq DESC LIMIT 1 OFFSET ?", (max(1, int(keep)),)
            ).fetchone()
            if row is None:
                return 0
            dropped = conn.execute("DELETE FROM memory_changes WHERE seq <= ?", (row[0],)).rowcount
            conn.execute("UPDATE memory_change_floor SET floor = max(floor, ?)", (row[0],))
        return int(dropped)
