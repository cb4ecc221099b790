"""``IndexFollower``: processes sharing a data directory see each other's writes.

Each "process" here is a separate ``create_memory_system`` on the same
DEVELOPMENT data directory: its own SQLite connection, fast core and BM25
index, exactly what a second process has (the real multi-process runs are in
``tests/integration/test_multiprocess_dev.py``).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from somafractalmemory.core import SomaFractalMemoryEnterprise
from somafractalmemory.factory import create_memory_system
from somafractalmemory.models import HistoryEntry, Memory, MemoryType, memory_id, now
from somafractalmemory.services.follower import IndexFollower

NS = "shared"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Processes:
    """Memory systems on one data directory, each standing for a process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.open_ones: list[SomaFractalMemoryEnterprise] = []

    def __call__(self, interval_ms: int = 0, data: Path | None = None) -> SomaFractalMemoryEnterprise:
        config = {
            "data_dir": str(data or self.root / "data"),
            "sync_interval_ms": interval_ms,
            "embeddings": {"share": True},  # the hash embedder's vectors are not shared by default
        }
        system = create_memory_system("development", NS, config)
        self.open_ones.append(system)
        return system

    def close(self, system: SomaFractalMemoryEnterprise) -> None:
        self.open_ones.remove(system)
        system.close()


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path)
    yield processes
    for system in list(processes.open_ones):
        processes.close(system)


def follower(system: SomaFractalMemoryEnterprise) -> IndexFollower:
    assert system.backends.follower is not None
    return system.backends.follower


def texts(hits: list[dict[str, Any]]) -> list[str]:
    return [h["text"] for h in hits]


def test_development_wires_a_follower_and_test_mode_does_not(opened: Processes) -> None:
    assert isinstance(opened().backends.follower, IndexFollower)
    assert create_memory_system("test", NS).backends.follower is None


def test_stores_updates_and_deletes_of_another_process_are_recalled(opened: Processes) -> None:
    a, b = opened(), opened()
    a.store_memory((1, 2, 3), {"text": "the purple elephant dances"})
    assert texts(b.recall("purple elephant", top_k=1)) == ["the purple elephant dances"]
    assert texts(b.keyword_search("elephant")) == ["the purple elephant dances"]

    a.store_memory((1, 2, 3), {"text": "the green giraffe sings"})
    assert texts(b.recall("green giraffe", top_k=1)) == ["the green giraffe sings"]
    assert b.keyword_search("elephant") == []
    assert b.backends.vectors.versions(NS) == {memory_id(NS, (1.0, 2.0, 3.0)): 2}

    a.delete((1, 2, 3))
    assert b.recall("green giraffe") == [] and b.keyword_search("giraffe") == []
    assert b.backends.vectors.count(NS) == 0 and b.backends.keywords.count(NS) == 0
    # another namespace, by a core this process never built
    a.for_namespace("elsewhere").store_memory((1,), {"text": "quiet otters"})
    assert texts(b.for_namespace("elsewhere").recall("otters", top_k=1)) == ["quiet otters"]


def test_writers_vectors_are_reused_and_own_writes_cost_nothing(opened: Processes) -> None:
    a, b = opened(), opened()
    a.store_memories_bulk([((i, 0, 0), {"text": f"note number {i}"}) for i in range(50)])
    b.recall("note", top_k=3)
    stats = follower(b).stats
    assert (stats["indexed"], stats["embedded"]) == (50, 0)  # every vector came from the writer
    b.store_memories_bulk([((i, 1, 0), {"text": f"own note {i}"}) for i in range(20)])
    b.recall("note", top_k=3)
    assert stats["indexed"] == 50 and stats["skipped"] == 20
    a_vec = a.backends.vectors.cosines(NS, a.embed_text("note number 7"), [memory_id(NS, (7.0, 0.0, 0.0))])
    b_vec = b.backends.vectors.cosines(NS, b.embed_text("note number 7"), [memory_id(NS, (7.0, 0.0, 0.0))])
    assert a_vec == pytest.approx(b_vec)


def test_a_limited_sync_applies_about_that_many_changes_and_the_next_one_the_rest(opened: Processes) -> None:
    a, b = opened(), opened()
    b.recall("anything")  # caught up with an empty feed
    for i in range(30):  # thirty changes, one per write
        a.store_memory((i, 5), {"text": f"limited note {i}"})
    fb = follower(b)
    fb.sync(force=True, limit=12)
    assert fb.behind() and fb.stats["changes"] == 12 and b.backends.vectors.count(NS) == 12
    fb.sync(force=True, limit=100)
    assert not fb.behind() and fb.stats["changes"] == 30 and b.backends.vectors.count(NS) == 30


def test_reads_check_the_feed_at_most_every_interval(opened: Processes) -> None:
    a, b = opened(), opened(interval_ms=200)
    clock = Clock()
    follower(b)._clock = clock
    b.recall("anything")  # the first read checks
    a.store_memory((1,), {"text": "a fresh comet"})
    assert b.recall("comet") == []  # within the interval: not looked at yet
    clock.t += 0.199
    assert b.recall("comet") == []
    clock.t += 0.002
    assert texts(b.recall("comet")) == ["a fresh comet"]


def test_a_memory_waits_for_its_writers_vector_then_is_embedded_here(opened: Processes) -> None:
    a, b = opened(), opened()
    clock = Clock()
    follower(b)._clock = clock
    b.recall("warm up")
    memory = Memory(
        memory_id(NS, (4.0,)), NS, (4.0,), {"text": "slow writer"}, MemoryType.EPISODIC, now(), now()
    )
    entry = HistoryEntry(NS, memory.id, (4.0,), 1, "created", memory.payload, MemoryType.EPISODIC, now())
    a.backends.kv.put_many([memory], [entry])  # committed; the writer has not embedded it yet
    assert b.recall("slow writer") == []
    assert follower(b).stats["embedded"] == 0
    clock.t += follower(b).grace + 0.01  # the writer never delivers: embed it here
    assert texts(b.recall("slow writer", top_k=1)) == ["slow writer"]
    assert follower(b).stats["embedded"] == 1


def test_a_pending_memory_is_indexed_as_soon_as_the_writer_saves_its_vector(opened: Processes) -> None:
    a, b = opened(), opened()
    clock = Clock()
    follower(b)._clock = clock
    memory = Memory(
        memory_id(NS, (5.0,)), NS, (5.0,), {"text": "late vector"}, MemoryType.EPISODIC, now(), now()
    )
    a.backends.kv.put_many([memory], [])
    assert b.recall("late vector") == []
    a.indexer.index([memory])  # the writer finishes: its vector is saved
    assert texts(b.recall("late vector", top_k=1)) == ["late vector"]
    assert follower(b).stats["embedded"] == 0


def test_a_deleted_then_recreated_memory_is_reindexed_despite_the_same_version(opened: Processes) -> None:
    a, b = opened(), opened()
    a.store_memory((7,), {"text": "first life"})
    assert texts(b.recall("first life", top_k=1)) == ["first life"]
    a.delete((7,))
    a.store_memory((7,), {"text": "second life"})  # version 1 again
    assert texts(b.keyword_search("second")) == ["second life"]
    assert b.keyword_search("first") == []


def test_old_content_is_dropped_while_a_recreated_memory_waits_for_its_vector(opened: Processes) -> None:
    a, b = opened(), opened()
    clock = Clock()
    follower(b)._clock = clock
    a.store_memory((8,), {"text": "old content"})
    assert texts(b.keyword_search("old")) == ["old content"]
    a.delete((8,))
    again = Memory(
        memory_id(NS, (8.0,)), NS, (8.0,), {"text": "new content"}, MemoryType.EPISODIC, now(), now()
    )
    a.backends.kv.put_many([again], [])  # version 1 again; its writer has not embedded it yet
    assert b.keyword_search("old") == [] and b.recall("content") == []
    clock.t += follower(b).grace + 0.01
    assert texts(b.recall("new content", top_k=1)) == ["new content"]


def test_restart_replays_only_the_changes_since_the_snapshots(opened: Processes, tmp_path: Path) -> None:
    a = opened()
    a.store_memories_bulk([((i,), {"text": f"memory {i}"}) for i in range(30)])
    opened.close(a)
    b = opened()
    opened_with = follower(b).stats
    assert opened_with["changes"] == 0  # the snapshots were current
    b.store_memory((100,), {"text": "written while a was away"})
    b.delete((3,))
    c = opened()  # b has not saved its snapshots (still running, or crashed)
    assert follower(c).stats["changes"] == 2  # replayed, not reconciled
    assert texts(c.recall("written while away", top_k=1)) == ["written while a was away"]
    assert c.backends.vectors.count(NS) == 30 and c.backends.keywords.count(NS) == 30


def test_a_full_reconcile_is_saved_for_the_next_start(opened: Processes, tmp_path: Path) -> None:
    a = opened()
    a.store_memories_bulk([((i,), {"text": f"memory {i}"}) for i in range(10)])
    opened.close(a)
    for name in ("vectors", "keywords"):
        shutil.rmtree(tmp_path / "data" / name)
    b = opened()  # no snapshots: a full reconcile, then nothing changes
    assert b.backends.vectors.count(NS) == 10
    opened.close(b)
    c = opened()
    assert follower(c).start() == {"replayed_namespaces": 1, "changes": 0, "reconciled_namespaces": 0}
    assert texts(c.recall("memory 4", top_k=1)) == ["memory 4"]


def test_snapshots_of_another_database_are_discarded(opened: Processes, tmp_path: Path) -> None:
    a = opened()
    a.store_memory((1,), {"text": "from the old database"})
    opened.close(a)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("vectors", "keywords"):
        shutil.copytree(tmp_path / "data" / name, other / name)
    b = opened(data=other)  # a new memories.db beside the old snapshot files
    b.store_memory((2,), {"text": "from the new database"})
    assert texts(b.recall("database", top_k=5)) == ["from the new database"]
    assert b.backends.vectors.count(NS) == 1 and b.backends.keywords.count(NS) == 1


def test_an_older_view_never_overwrites_a_newer_snapshot(tmp_path: Path) -> None:
    from somafractalmemory.fastcore import FastCoreVectorStore
    from somafractalmemory.interfaces.storage import VectorPoint

    def point(i: str, v: float) -> VectorPoint:
        return VectorPoint(i, np.array([v, 1.0], dtype=np.float32), 1.0, MemoryType.EPISODIC)

    new, old = FastCoreVectorStore(2, tmp_path), FastCoreVectorStore(2, tmp_path)
    new.upsert(NS, [point("x", 1.0), point("y", 2.0)])
    old.upsert(NS, [point("x", 1.0)])
    new.set_checkpoint("feed", 9)
    old.set_checkpoint("feed", 5)
    new.close()
    old.close()  # last to flush, but older: skipped
    assert FastCoreVectorStore(2, tmp_path).checkpoints() == {NS: ("feed", 9)}
    assert FastCoreVectorStore(2, tmp_path).count(NS) == 2
    other = FastCoreVectorStore(2, tmp_path)
    other.upsert(NS, [point("z", 3.0)])
    other.set_checkpoint("another feed", 1)  # another database: its view wins
    other.close()
    assert FastCoreVectorStore(2, tmp_path).checkpoints() == {NS: ("another feed", 1)}


class GatedEmbedder:
    """The real embedder, except that embedding ``trigger`` waits for ``gate``:
    holds a writer between its canonical write and its indexing."""

    def __init__(self, inner: Any, trigger: str) -> None:
        self.inner, self.trigger = inner, trigger
        self.model_id, self.dim = inner.model_id, inner.dim
        self.reuse_vectors = inner.reuse_vectors
        self.entered, self.gate = threading.Event(), threading.Event()

    def embed(self, texts: Any) -> Any:
        if any(self.trigger in t for t in texts):
            self.entered.set()
            assert self.gate.wait(10)
        return self.inner.embed(texts)


def test_a_catch_up_never_overtakes_a_write_being_indexed(opened: Processes) -> None:
    a, b = opened(), opened()
    a.store_memory((1,), {"text": "version one"})
    b.recall("version")
    gated = GatedEmbedder(b.indexer.embedder, "version two")
    b.indexer.embedder = gated
    writer = threading.Thread(target=b.store_memory, args=((1,), {"text": "version two"}))
    writer.start()
    assert gated.entered.wait(10)  # b committed version 2 and is embedding it
    a.store_memory((1,), {"text": "version three"})  # another process commits version 3
    reader = threading.Thread(target=b.recall, args=("version",))
    reader.start()  # its catch-up must wait for b's write to be indexed
    reader.join(0.3)
    gated.gate.set()
    writer.join()
    reader.join()
    follower(b).sync(force=True)
    assert b.backends.vectors.versions(NS) == {memory_id(NS, (1.0,)): 3}
    assert texts(b.keyword_search("three")) == ["version three"] and b.keyword_search("two") == []


def test_concurrent_writers_leave_every_index_at_the_stored_version(opened: Processes) -> None:
    a, b = opened(), opened()
    ids = [(float(i),) for i in range(8)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def write(system: SomaFractalMemoryEnterprise, tag: str) -> None:
        try:
            for round_ in range(40):
                for coord in ids[round_ % 3 :: 2]:
                    system.store_memory(coord, {"text": f"{tag} round {round_}"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read(system: SomaFractalMemoryEnterprise) -> None:
        while not stop.is_set():
            system.recall("round", top_k=3)

    writers = [threading.Thread(target=write, args=(s, t)) for s, t in ((a, "a"), (b, "b"))]
    readers = [threading.Thread(target=read, args=(s,)) for s in (a, b)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert not errors
    truth = {m.id: m for m in a.backends.kv.iter_memories(NS)}
    for system in (a, b):
        follower(system).sync(force=True)
        assert system.backends.vectors.versions(NS) == {i: m.version for i, m in truth.items()}
        for m in truth.values():
            assert memory_id(NS, m.coordinate) in [
                h.memory.id for h in system._recall.keyword_search(m.text, 20)
            ]


def test_hash_vectors_are_recomputed_not_shared_unless_asked(tmp_path: Path) -> None:
    plain = create_memory_system("development", NS, {"data_dir": str(tmp_path / "a")})
    shared = create_memory_system(
        "development", NS, {"data_dir": str(tmp_path / "b"), "embeddings": {"share": True}}
    )
    try:
        assert plain.backends.embedder.reuse_vectors is False
        assert plain.backends.embeddings is None
        assert shared.backends.embeddings is not None
    finally:
        plain.close()
        shared.close()


def test_a_process_left_below_the_pruned_feed_rebuilds_its_indexes(opened: Processes) -> None:
    a, b = opened(), opened()
    a.store_memories_bulk([((i,), {"text": f"memory {i}"}) for i in range(20)])
    assert texts(b.recall("memory 7", top_k=1)) == ["memory 7"]
    assert b.backends.vectors.count(NS) == 20  # b is current
    a.store_memory((5,), {"text": "rewritten while b was not looking"})
    a.delete((7,))
    a.store_memory((40,), {"text": "new while b was not looking"})
    assert a.backends.kv.prune_changes(1) > 0  # b's position is gone from the feed
    assert texts(b.recall("rewritten while not looking", top_k=1)) == ["rewritten while b was not looking"]
    assert follower(b).stats["rebuilds"] == 1
    assert b.backends.vectors.versions(NS) == a.backends.vectors.versions(NS)
    found = {i for i, _ in b.backends.keywords.search(NS, "memory 7", 100)}
    assert b.backends.keywords.count(NS) == 20  # 0-19 without 7, and 40
    assert found == {memory_id(NS, (float(i),)) for i in range(20) if i not in (5, 7)}
    b.store_memory((41,), {"text": "after the rebuild"})  # and it follows the feed again
    assert texts(a.recall("after the rebuild", top_k=1)) == ["after the rebuild"]
    assert follower(b).stats["rebuilds"] == 1


def test_snapshots_older_than_the_feeds_floor_are_rebuilt_not_replayed(opened: Processes) -> None:
    a = opened()
    a.store_memories_bulk([((i,), {"text": f"memory {i}"}) for i in range(10)])
    opened.close(a)  # snapshots at the head of the feed
    b = opened()
    b.store_memory((20,), {"text": "written after the snapshots"})
    b.delete((3,))
    b.backends.kv.prune_changes(1)  # b keeps running: its own snapshots are not saved
    c = opened()
    assert follower(c).stats["changes"] == 0 and follower(c).stats["rebuilds"] == 0
    assert c.backends.vectors.versions(NS) == b.backends.vectors.versions(NS)
    assert c.backends.keywords.count(NS) == 10
    assert texts(c.recall("written after the snapshots", top_k=1)) == ["written after the snapshots"]


def test_a_prune_between_the_floor_check_and_the_read_still_rebuilds(
    opened: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = opened(), opened()
    a.store_memory((1,), {"text": "seen by b"})
    assert texts(b.recall("seen by b", top_k=1)) == ["seen by b"]
    a.store_memory((2,), {"text": "pruned before b reads it"})
    a.store_memory((3,), {"text": "kept in the feed"})
    feed = follower(b).kv
    real = feed.changes_since

    def pruned_first(seq: int, limit: int = 1000) -> Any:  # another process prunes right then
        monkeypatch.setattr(feed, "changes_since", real)
        a.backends.kv.prune_changes(1)
        return real(seq, limit)

    monkeypatch.setattr(feed, "changes_since", pruned_first)
    assert texts(b.recall("pruned before b reads it", top_k=1)) == ["pruned before b reads it"]
    assert follower(b).stats["rebuilds"] == 1
