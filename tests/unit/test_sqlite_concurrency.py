"""SQLite: writers sharing one file, and the reads that build memories from rows.

Writers on different connections (threads or processes) queue on the write
lock: ``Database.write`` retries ``BEGIN IMMEDIATE`` after short sleeps
instead of SQLite's busy handler, until the same deadline. Reads decode the
JSON columns with ``pydantic_core`` and fall back to ``json`` for what it
refuses.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from somafractalmemory.adapters.sqlite import SQLiteStore
from somafractalmemory.adapters.sqlite import db as db_module
from somafractalmemory.adapters.sqlite.db import Database
from somafractalmemory.adapters.sqlite.store import _GET_MANY
from somafractalmemory.core import SomaFractalMemoryEnterprise
from somafractalmemory.errors import BackendUnavailable
from somafractalmemory.factory import create_memory_system
from somafractalmemory.models import HistoryEntry, Memory, MemoryType, memory_id

from ..threads import run_together, store_one_memory_from_both

NS = "shared"


def mem(coord: tuple[float, ...], payload: dict[str, Any] | None = None) -> Memory:
    return Memory(memory_id(NS, coord), NS, coord, payload or {"text": "x"}, MemoryType.EPISODIC, 1.0, 1.0, 1)


def created(m: Memory) -> HistoryEntry:
    return HistoryEntry(NS, m.id, m.coordinate, m.version, "created", m.payload, m.memory_type, 1.0)


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another connection in the middle of a write transaction."""
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO sfm_schema VALUES ('holder', 1)")
    return holder


def busy_timeout(store: SQLiteStore) -> int:
    with store.database.read() as conn:
        return int(conn.execute("PRAGMA busy_timeout").fetchone()[0])


class SleepLog:
    """Stands in for the ``time`` module of ``db.py``: records the retry sleeps."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.monotonic = time.monotonic

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        time.sleep(seconds)


# --- writers -------------------------------------------------------------------


def test_writers_on_their_own_connections_all_land(tmp_path: Path) -> None:
    path = tmp_path / "sfm.db"
    SQLiteStore(path).close()  # the schema exists before the writers race
    per_writer = 100

    def writer(n: int) -> None:
        store = SQLiteStore(path)  # a connection of its own: SQLite's locks decide
        try:
            for i in range(per_writer):
                m = mem((float(n), float(i)))
                store.put_many([m], [created(m)])
        finally:
            store.close()

    assert run_together(writer, range(4)) == []
    store = SQLiteStore(path)
    assert store.counts(NS)["total"] == 4 * per_writer
    assert sum(1 for _ in store.iter_history(NS)) == 4 * per_writer
    assert store.change_seq() == 4 * per_writer  # one change per write, none lost
    assert busy_timeout(store) == 10_000
    store.close()


WRITER_SCRIPT = """
import sys
from somafractalmemory.adapters.sqlite import SQLiteStore
from somafractalmemory.models import HistoryEntry, Memory, MemoryType, memory_id

path, n, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = SQLiteStore(path)
print("ready", flush=True)
sys.stdin.readline()  # both processes start writing together
for i in range(count):
    coord = (float(n), float(i))
    m = Memory(memory_id("shared", coord), "shared", coord, {"i": i}, MemoryType.EPISODIC, 1.0, 1.0, 1)
    h = HistoryEntry("shared", m.id, coord, 1, "created", m.payload, m.memory_type, 1.0)
    store.put_many([m], [h])
store.close()
"""


def test_writer_processes_sharing_a_file_all_land(tmp_path: Path) -> None:
    path = tmp_path / "sfm.db"
    SQLiteStore(path).close()
    count = 300
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, str(path), str(n), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:  # pragma: no cover - only when the test already failed
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    store = SQLiteStore(path)
    assert store.counts(NS)["total"] == 2 * count
    assert sum(1 for _ in store.iter_history(NS)) == 2 * count
    found = store.get_many(NS, [memory_id(NS, (float(n), float(i))) for n in range(2) for i in range(count)])
    assert len(found) == 2 * count
    store.close()


def test_a_writer_waits_for_a_held_write_lock_then_lands(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "sfm.db"
    store = SQLiteStore(path)
    log = SleepLog()
    monkeypatch.setattr(db_module, "time", types.SimpleNamespace(sleep=log.sleep, monotonic=log.monotonic))
    holder = hold_write_lock(path)
    m = mem((1.0,))
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            store.put_many([m], [created(m)])
            outcome.append(None)
        except BaseException as exc:  # pragma: no cover - reported below
            outcome.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.3)
    assert writer.is_alive() and outcome == []  # waiting for the lock
    holder.execute("COMMIT")
    released = time.monotonic()
    writer.join(timeout=5)
    assert outcome == [None]
    assert time.monotonic() - released < 1.0
    holder.close()
    assert store.get_many(NS, [m.id]) == {m.id: m}
    assert [h.action for h in store.history(NS, m.id)] == ["created"]
    # Short sleeps first, doubling, never longer than MAX_RETRY_SLEEP.
    assert log.sleeps[:3] == pytest.approx([50e-6, 100e-6, 200e-6])
    assert max(log.sleeps) <= db_module.MAX_RETRY_SLEEP
    assert len(log.sleeps) > 10
    assert busy_timeout(store) == 10_000  # reads keep the busy handler
    store.close()


def test_a_writer_gives_up_at_the_deadline_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "sfm.db"
    store = SQLiteStore(database=Database(path, timeout=0.3))
    store.database.close()  # the store holds the only other reference
    holder = hold_write_lock(path)
    m = mem((2.0,))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="database is locked"):
        store.put_many([m], [created(m)])
    waited = time.monotonic() - started
    assert 0.3 <= waited < 2.0
    with store.database.read() as conn:
        assert not conn.in_transaction
    assert busy_timeout(store) == 300
    holder.execute("ROLLBACK")
    holder.close()
    store.put_many([m], [created(m)])  # the next write goes through
    assert store.counts(NS)["total"] == 1
    store.close()


def test_errors_other_than_busy_are_not_retried(tmp_path: Path, monkeypatch: Any) -> None:
    store = SQLiteStore(tmp_path / "sfm.db")
    log = SleepLog()
    monkeypatch.setattr(db_module, "time", types.SimpleNamespace(sleep=log.sleep, monotonic=log.monotonic))
    # A transaction is open on the connection: BEGIN fails at once.
    with store.database.write(), pytest.raises(BackendUnavailable, match="within a transaction"):
        store.put_many([mem((3.0,))], [])
    assert log.sleeps == []
    assert store.counts(NS)["total"] == 0
    store.close()


# --- reads ---------------------------------------------------------------------


def test_get_many_returns_the_rows_asked_for(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sfm.db")
    stored = [mem((float(i), 0.5)) for i in range(1200)]
    store.put_many(stored, [])
    ids = [m.id for m in reversed(stored)]
    found = store.get_many(NS, ids)
    assert list(found) == ids  # in the order asked, past any parameter limit
    assert found == {m.id: m for m in stored}
    assert store.get_many(NS, (stored[3].id, "missing", stored[3].id, stored[5].id)) == {
        stored[3].id: stored[3],
        stored[5].id: stored[5],
    }
    assert store.get_many(NS, [stored[7].id]) == {stored[7].id: stored[7]}
    assert store.get_many(NS, ["missing"]) == {}
    assert store.get_many(NS, []) == {}
    assert store.get_many("other", [stored[0].id, stored[1].id]) == {}
    assert store.get_many(NS, ['a"b\\c', "\ud800", "é"]) == {}
    store.close()


def test_get_many_reads_through_the_namespace_id_index(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sfm.db")
    with store.database.read() as conn:
        plan = [str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + _GET_MANY, ('["a"]', NS))]
    assert any(
        "SEARCH m USING INDEX sqlite_autoindex_memories_1 (namespace=? AND id=?)" in p for p in plan
    ), plan
    assert not any("SCAN m" in p or "TEMP B-TREE" in p for p in plan), plan
    store.close()


def test_payloads_the_fast_decoder_refuses_are_read_with_json(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sfm.db")
    deep: Any = "bottom"
    for _ in range(300):  # deeper than pydantic_core's nesting limit
        deep = [deep]
    odd = mem((1.0,), {"deep": deep})
    plain = mem((2.0,), {"text": "plain", "n": 12345678901234567890123, "f": 0.1, "u": "é😀"})
    store.put_many([odd, plain], [created(odd), created(plain)])
    assert store.get_many(NS, [odd.id, plain.id]) == {odd.id: odd, plain.id: plain}
    assert store.find_range(NS, (0.0,), (5.0,)) == [odd, plain]
    assert [h.payload for h in store.history(NS, odd.id)] == [odd.payload]
    assert json.loads(json.dumps(store.get_many(NS, [plain.id])[plain.id].payload)) == plain.payload
    store.close()


def test_find_range_beyond_the_stored_dimensions_is_empty(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sfm.db")
    store.put_many([mem((1.0, 1.0))], [])
    assert store.find_range(NS, (0.0,) * 17, (9.0,) * 17) == []
    assert store.find_range(NS, (0.0, 0.0), (2.0, 2.0), MemoryType.SEMANTIC) == []
    assert len(store.find_range(NS, (0.0, 0.0), (2.0, 2.0), MemoryType.EPISODIC)) == 1
    store.close()


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[list[SomaFractalMemoryEnterprise]]:
    """Two memory systems on one data directory, as two API workers: each has
    write locks of its own, only the file is shared."""
    config = {"data_dir": str(tmp_path), "embeddings": {"model": "hash"}}
    systems = [create_memory_system("development", NS, config) for _ in range(2)]
    yield systems
    for memory in systems:
        memory.close()


def test_one_memory_stored_from_two_processes_keeps_every_version(
    two_processes: list[SomaFractalMemoryEnterprise],
) -> None:
    """They store one memory at once: every store becomes a version of its
    own, each recorded once in the history."""
    store_one_memory_from_both(two_processes, per_writer=30)


def test_remember_from_two_processes_never_merges_two_memories(
    two_processes: list[SomaFractalMemoryEnterprise],
) -> None:
    """Both pick the same free coordinate for the same payload at once: the
    one that writes second takes the next free coordinate instead of writing
    over the first one's memory (as a second ``remember`` in one process does)."""
    systems, per_writer = two_processes, 15
    assert (
        run_together(
            lambda k: [systems[k % 2].remember({"text": "the same note"}) for _ in range(per_writer)],
            range(4),
        )
        == []
    )
    stored = list(systems[0].backends.kv.iter_memories(NS))
    assert len(stored) == 4 * per_writer
    assert {m.version for m in stored} == {1}
    assert len({m.coordinate for m in stored}) == 4 * per_writer


def test_set_importance_keeps_what_another_process_stored_meanwhile(
    two_processes: list[SomaFractalMemoryEnterprise],
) -> None:
    """One process stores new texts at a coordinate while another sets its
    importance: each importance change is made to the text as it then was,
    never to an older one read before the other's store (which it would undo)."""
    systems, coordinate = two_processes, (5.0, 5.0)
    systems[0].store_memory(coordinate, {"text": "first"})

    def work(k: int) -> None:
        for i in range(40):
            if k == 0:
                systems[0].store_memory(coordinate, {"text": f"text {i}"})
            else:
                systems[1].set_importance(coordinate, 1.0 + i)

    assert run_together(work, range(2)) == []
    history = systems[0].get_versions(coordinate)
    assert sorted(h.version for h in history) == list(range(1, 82))
    for before, after in itertools.pairwise(history):
        if "importance" in (after.payload or {}):  # a set_importance: only the importance changed
            assert after.changed_keys == ["importance"], (before.payload, after.payload)
