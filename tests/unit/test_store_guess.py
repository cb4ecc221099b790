"""Stores after a streak of new memories skip the read (``services.store._NewStreak``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from somafractalmemory import SomaFractalMemoryEnterprise, create_memory_system
from somafractalmemory.errors import WriteConflict
from somafractalmemory.interfaces.storage import IKeyValueStore
from somafractalmemory.models import Memory
from somafractalmemory.services import store as store_module
from somafractalmemory.services.store import GUESS_NEW_AFTER


class CountedReads:
    """The in-process canonical store, counting the reads of current versions."""

    def __init__(self, inner: IKeyValueStore) -> None:
        self.inner = inner
        self.reads = 0

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Memory]:
        self.reads += 1
        return self.inner.get_many(namespace, ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def mem() -> SomaFractalMemoryEnterprise:
    return create_memory_system("test", "guess")


def counted(mem: SomaFractalMemoryEnterprise) -> CountedReads:
    reads = CountedReads(mem.backends.kv)
    mem.backends.kv = reads  # type: ignore[assignment]
    return reads


def version_of(mem: SomaFractalMemoryEnterprise, coordinate: tuple[float, ...]) -> int:
    got = mem.get_memory(coordinate)
    assert got is not None
    return got.version


def streak_of_new(mem: SomaFractalMemoryEnterprise, n: int = GUESS_NEW_AFTER) -> None:
    for i in range(n):
        mem.store_memory((100.0 + i,), {"text": f"new {i}"})


def test_after_a_streak_of_new_memories_a_store_writes_without_reading(
    mem: SomaFractalMemoryEnterprise,
) -> None:
    reads = counted(mem)
    streak_of_new(mem)
    assert reads.reads == GUESS_NEW_AFTER  # each of them read first
    stored = mem.store_memory((1.0,), {"text": "guessed"})
    assert reads.reads == GUESS_NEW_AFTER and stored.version == 1
    assert mem._store.new_streak.guessed == 1 and mem._store.new_streak.missed == 0
    assert [v.action for v in mem.get_versions((1.0,))] == ["created"]


def test_a_wrong_guess_is_read_and_written_as_the_next_version(mem: SomaFractalMemoryEnterprise) -> None:
    first = mem.store_memory((1.0,), {"text": "first", "keep": 1})
    streak_of_new(mem)
    reads = counted(mem)
    second = mem.store_memory((1.0,), {"text": "second"})
    assert reads.reads == 1  # the guess failed: one read, then the write
    assert second.version == 2 and second.created_at == first.created_at
    got = mem.retrieve((1.0,))
    assert got is not None and got["text"] == "second"
    versions = mem.get_versions((1.0,))
    assert [(v.version, v.action) for v in versions] == [(1, "created"), (2, "updated")]
    assert versions[1].changed_keys == ["keep", "text", "timestamp"]
    assert mem._store.new_streak.missed == 1
    before = reads.reads
    mem.store_memory((2.0,), {"text": "after the miss"})  # the streak starts again: read first
    assert reads.reads == before + 1


def test_a_retried_write_fills_in_the_time_of_the_attempt_that_is_written(
    mem: SomaFractalMemoryEnterprise, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failed guess is built at one time and the write that stands at a later
    one: the filled-in ``timestamp`` and ``expires_at`` are the later one's."""
    mem.store_memory((1.0,), {"text": "first"})
    streak_of_new(mem)
    clock = iter(range(1_000_000, 1_000_010))
    monkeypatch.setattr(store_module, "now", lambda: float(next(clock)))
    stored = mem.store_memory((1.0,), {"text": "second", "ttl_seconds": 60})
    assert mem._store.new_streak.missed == 1  # two attempts, at two times
    assert stored.updated_at == 1_000_001.0
    assert stored.payload["timestamp"] == stored.updated_at
    assert stored.payload["expires_at"] == stored.updated_at + 60
    got = mem.retrieve((1.0,))
    assert got is not None and got["timestamp"] == stored.updated_at


def test_a_batch_with_one_existing_memory_writes_nothing_on_the_guess(
    mem: SomaFractalMemoryEnterprise,
) -> None:
    mem.store_memory((1.0,), {"text": "there"})
    streak_of_new(mem)
    stored = mem.store_memories_bulk([((2.0,), {"text": "new"}), ((1.0,), {"text": "again"})])
    assert [m.version for m in stored] == [1, 2]
    assert [v.version for v in mem.get_versions((2.0,))] == [1]  # written once, not by the guess too
    assert [v.version for v in mem.get_versions((1.0,))] == [1, 2]
    assert mem._store.new_streak.missed == 1


def test_updates_never_guess(mem: SomaFractalMemoryEnterprise) -> None:
    for i in range(3 * GUESS_NEW_AFTER):
        mem.store_memory((1.0,), {"text": f"update {i}"})
    assert mem._store.new_streak.guessed == 0
    assert version_of(mem, (1.0,)) == 3 * GUESS_NEW_AFTER


def test_an_expected_version_is_checked_as_before(mem: SomaFractalMemoryEnterprise) -> None:
    mem.store_memory((1.0,), {"text": "there"})
    streak_of_new(mem)
    guessed = mem._store.new_streak.guessed
    with pytest.raises(WriteConflict):
        mem._store.store_many([((1.0,), {"text": "must be new"}, None)], expect=0)
    assert version_of(mem, (1.0,)) == 1 and mem._store.new_streak.guessed == guessed
