"""SQLite-specific guarantees: data on disk survives, a failed batch leaves nothing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from somafractalmemory.adapters.sqlite import SQLiteKeywordIndex, SQLiteStore
from somafractalmemory.errors import BackendUnavailable, ConfigurationError, InvalidInput
from somafractalmemory.models import HistoryEntry, Link, Memory, MemoryType, memory_id

from ..threads import run_together

NS = "durable"


def mem(coord: tuple[float, ...], text: str = "x", version: int = 1) -> Memory:
    return Memory(memory_id(NS, coord), NS, coord, {"text": text}, MemoryType.EPISODIC, 1.0, 1.0, version)


def created(m: Memory, action: str = "created") -> HistoryEntry:
    return HistoryEntry(NS, m.id, m.coordinate, m.version, action, m.payload, m.memory_type, 1.0)


def link(a: Memory, b: Memory) -> Link:
    return Link(NS, a.id, b.id, a.coordinate, b.coordinate)


def test_everything_survives_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "data" / "sfm.db"
    a, b = mem((1.0, 2.0), "alpha"), mem((3.0, 4.0), "beta")
    store = SQLiteStore(path)
    store.put_many([a, b], [created(a), created(b)])
    store.add_links([link(a, b)])
    store.close()
    index = SQLiteKeywordIndex(tmp_path / "data" / "keywords.db")
    index.index(NS, [(a.id, "alpha words"), (b.id, "beta words")])
    index.close()

    reopened = SQLiteStore(path)
    assert reopened.get_many(NS, [a.id, b.id]) == {a.id: a, b.id: b}
    assert [m.id for m in reopened.find_range(NS, (0.0, 0.0), (2.0, 2.0))] == [a.id]
    assert [h.action for h in reopened.history(NS, a.id)] == ["created"]
    assert [e.to_id for e in reopened.neighbors(NS, a.id)] == [b.id]
    reopened.close()
    index = SQLiteKeywordIndex(tmp_path / "data" / "keywords.db")
    assert [doc for doc, _ in index.search(NS, "beta", 5)] == [b.id]
    index.close()


def test_a_batch_rejected_by_a_constraint_leaves_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sfm.db")
    kept = mem((0.0,), "kept")
    store.put_many([kept], [created(kept)])
    batch = [mem((float(i),), "new") for i in range(1, 50)] + [mem((0.0,), "overwritten", version=2)]
    bad_history = [created(m) for m in batch] + [created(batch[0], action="")]  # action must not be empty
    with pytest.raises(InvalidInput):
        store.put_many(batch, bad_history)
    assert store.counts(NS)["total"] == 1
    assert store.get_many(NS, [kept.id])[kept.id].payload == {"text": "kept"}
    assert store.find_range(NS, (1.0,), (100.0,)) == []
    assert [h.action for h in store.history(NS, kept.id)] == ["created"]
    store.close()


def test_a_batch_failing_mid_transaction_leaves_nothing(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "sfm.db"
    store = SQLiteStore(path)
    a, b = mem((1.0,)), mem((2.0,))
    store.put_many([a, b], [created(a), created(b)])
    store.add_links([link(a, b)])

    def explode(self: SQLiteStore, conn: Any, rows: Any) -> None:
        raise RuntimeError("crash after the memories were written")

    monkeypatch.setattr(SQLiteStore, "_append_history", explode)
    with pytest.raises(RuntimeError):
        store.put_many([mem((3.0,)), mem((1.0,), "changed", 2)], [])
    with pytest.raises(RuntimeError):
        store.delete_many(NS, [a.id], [])  # deletes memory and links, then fails on history
    monkeypatch.undo()
    store.close()

    reopened = SQLiteStore(path)
    assert set(reopened.get_many(NS, [a.id, b.id, mem((3.0,)).id])) == {a.id, b.id}
    assert reopened.get_many(NS, [a.id])[a.id].payload == {"text": "x"}
    assert reopened.count(NS) == 1
    assert [m.coordinate for m in reopened.find_range(NS, (0.0,), (5.0,))] == [(1.0,), (2.0,)]
    reopened.close()


def test_delete_many_removes_links_touching_the_ids(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sfm.db")
    a, b, c = mem((1.0,)), mem((2.0,)), mem((3.0,))
    store.put_many([a, b, c], [])
    store.add_links([link(a, b), link(c, a), link(b, c)])
    assert store.delete_many(NS, [a.id], [created(a, "deleted")]) == [a.id]
    assert [(e.from_id, e.to_id) for e in store.iter_links(NS)] == [(b.id, c.id)]
    store.close()


def test_range_queries_are_served_by_the_coordinate_index(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sfm.db")
    with store.database.read() as conn:
        store.put_many([mem((float(i), float(i))) for i in range(100)], [])
        # Reach the SQL the adapter runs through its own connection's trace hook.
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        store.find_range(NS, (1.0, 1.0), (3.0, 3.0))
        conn.set_trace_callback(None)
        [sql] = [s for s in statements if "c1 BETWEEN" in s]
        plan = " ".join(str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
    assert "SEARCH memories USING INDEX memories_box (namespace=? AND ndim=? AND c0>? AND c0<?)" in plan
    assert "SCAN" not in plan and "TEMP B-TREE" not in plan
    store.close()


def test_keyword_index_shares_the_store_connection(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sfm.db")
    index = SQLiteKeywordIndex(database=store.database)
    index.index(NS, [("a", "shared file")])
    store.close()
    assert [doc for doc, _ in index.search(NS, "shared", 3)] == ["a"]  # still open for the index
    index.close()
    with pytest.raises(BackendUnavailable):
        index.search(NS, "shared", 3)


def test_concurrent_writers_and_readers(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sfm.db")

    def writer(offset: int) -> None:
        for i in range(50):
            m = mem((float(offset), float(i)))
            store.put_many([m], [created(m)])
            store.find_range(NS, (0.0, 0.0), (10.0, 100.0))

    assert run_together(writer, range(4)) == []
    assert store.counts(NS)["total"] == 200
    store.close()


def test_closed_store_raises_backend_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sfm.db")
    store.close()
    with pytest.raises(BackendUnavailable):
        store.counts(NS)
    with pytest.raises(BackendUnavailable):
        store.health()


def test_unopenable_path_raises_backend_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BackendUnavailable):
        SQLiteStore(blocker / "sfm.db")


def test_a_file_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sfm.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sfm_schema SET version = 99 WHERE component = 'memories'")
    conn.close()
    with pytest.raises(ConfigurationError, match="schema version 99"):
        SQLiteStore(path)


CRASH_SCRIPT = """
import os, sys
from somafractalmemory.adapters.sqlite import SQLiteStore
from somafractalmemory.models import Memory, MemoryType, memory_id

def mem(x):
    coord = (x,)
    return Memory(memory_id("durable", coord), "durable", coord, {}, MemoryType.EPISODIC, 1.0, 1.0, 1)

store = SQLiteStore(sys.argv[1])
store.put_many([mem(0.0)], [])
SQLiteStore._append_history = lambda self, conn, rows: os._exit(3)  # the process dies mid-transaction
store.put_many([mem(float(i)) for i in range(1, 1000)], [])
"""


def test_a_process_killed_mid_batch_leaves_nothing_of_it(tmp_path: Path) -> None:
    path = tmp_path / "sfm.db"
    done = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(path)], capture_output=True, timeout=60)
    assert done.returncode == 3, done.stderr.decode()
    store = SQLiteStore(path)
    assert store.counts(NS)["total"] == 1  # only the batch committed before the crash
    assert [m.coordinate for m in store.iter_memories(NS)] == [(0.0,)]
    store.close()
