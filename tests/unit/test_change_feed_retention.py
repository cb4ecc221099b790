"""``ChangeFeedRetention``: the change feed keeps its newest changes as a process writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from somafractalmemory.adapters.memory.kv import InMemoryKeyValueStore
from somafractalmemory.errors import BackendUnavailable
from somafractalmemory.factory import create_memory_system
from somafractalmemory.models import Memory, MemoryType, memory_id
from somafractalmemory.services.retention import ChangeFeedRetention

EPISODIC = MemoryType.EPISODIC


def _write(kv: InMemoryKeyValueStore, start: int, count: int) -> None:
    def one(i: int) -> Memory:
        return Memory(memory_id("ns", (float(i),)), "ns", (float(i),), {"text": str(i)}, EPISODIC, 1.0, 1.0)

    kv.put_many([one(i) for i in range(start, start + count)], [])


def test_prunes_once_a_round_of_writes_is_full() -> None:
    kv = InMemoryKeyValueStore()
    retention = ChangeFeedRetention(kv, keep=5, every=10)
    _write(kv, 0, 9)
    retention.wrote(9)
    assert kv.change_floor() == 0  # the round is not full yet
    _write(kv, 9, 1)
    retention.wrote(1)
    retention.join()
    assert kv.change_floor() == 5 and retention.pruned == 5
    assert [c.seq for c in kv.changes_since(kv.change_floor())[1]] == [6, 7, 8, 9, 10]


def test_keep_zero_never_prunes() -> None:
    kv = InMemoryKeyValueStore()
    retention = ChangeFeedRetention(kv, keep=0, every=1)
    _write(kv, 0, 50)
    retention.wrote(50)
    assert kv.change_floor() == 0 and kv.change_seq() == 50


def test_a_failed_prune_is_logged_and_the_write_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Down(InMemoryKeyValueStore):
        def prune_changes(self, keep: int) -> int:
            raise BackendUnavailable("PostgreSQL", "connection refused", setting="POSTGRES_URL")

    retention = ChangeFeedRetention(Down(), keep=5, every=1)
    with caplog.at_level("WARNING", logger="somafractalmemory.services.retention"):
        retention.wrote(3)
        retention.join()
    assert "pruning the change feed failed" in caplog.text


def test_a_memory_system_prunes_its_feed_as_it_writes(tmp_path: Path) -> None:
    system = create_memory_system("development", "ns", {"data_dir": str(tmp_path), "change_feed_keep": 100})
    try:
        assert system.backends.retention.every == 1000
        system.store_memories_bulk([((i,), {"text": f"m {i}"}) for i in range(999)])
        assert system.backends.kv.change_floor() == 0
        system.store_memory((5000,), {"text": "the thousandth write"})
        system.backends.retention.join()  # the prune runs beside the write
        kv = system.backends.kv
        assert kv.change_floor() == kv.change_seq() - 100
        assert len(kv.changes_since(kv.change_floor(), 10_000)[1]) == 100
        assert system.recall("the thousandth write", top_k=1)[0]["text"] == "the thousandth write"
    finally:
        system.close()
