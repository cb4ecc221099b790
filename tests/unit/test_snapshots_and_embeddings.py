"""The pieces processes share: saved vectors, keyword snapshots, checkpoints."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from somafractalmemory.adapters.memory.keyword import InMemoryKeywordIndex
from somafractalmemory.adapters.sqlite import SQLiteStore
from somafractalmemory.adapters.sqlite.embeddings import SQLiteEmbeddingStore
from somafractalmemory.fastcore.checkpoint import file_checkpoint, supersedes
from somafractalmemory.interfaces.storage import IEmbeddingStore, ISnapshotIndex
from somafractalmemory.models import HistoryEntry, Memory, MemoryType, memory_id

NS = "ns"


def memory(coord: float, version: int = 1) -> Memory:
    m = memory_id(NS, (coord,))
    return Memory(m, NS, (coord,), {"text": f"at {coord}"}, MemoryType.EPISODIC, 1.0, 1.0, version)


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def stores(tmp_path: Path) -> tuple[SQLiteStore, SQLiteEmbeddingStore]:
    kv = SQLiteStore(tmp_path / "m.db")
    return kv, SQLiteEmbeddingStore(database=kv.database)


def test_saved_vectors_round_trip_by_model(stores: tuple[SQLiteStore, SQLiteEmbeddingStore]) -> None:
    kv, emb = stores
    assert isinstance(emb, IEmbeddingStore)
    a, b = memory(1.0), memory(2.0, version=3)
    kv.put_many([a, b], [])
    emb.put(NS, "model-x", [(a.id, 1, vec(1)), (b.id, 3, vec(2))])
    got = emb.get(NS, "model-x", [a.id, b.id, "absent"])
    assert set(got) == {a.id, b.id} and got[b.id][0] == 3
    np.testing.assert_array_equal(got[a.id][1], vec(1))
    assert emb.get(NS, "model-y", [a.id]) == {}  # another embedder's vectors are not reused
    emb.put(NS, "model-y", [(a.id, 1, vec(3))])  # a reindex replaces them
    assert emb.get(NS, "model-x", [a.id]) == {} and a.id in emb.get(NS, "model-y", [a.id])


def test_vectors_follow_their_memory(stores: tuple[SQLiteStore, SQLiteEmbeddingStore]) -> None:
    kv, emb = stores
    a = memory(1.0, version=2)
    emb.put(NS, "m", [(a.id, 2, vec(1))])  # no such memory: nothing saved
    assert emb.get(NS, "m", [a.id]) == {}
    kv.put_many([a], [])
    emb.put(NS, "m", [(a.id, 1, vec(1))])  # an older version than the stored memory: nothing saved
    assert emb.get(NS, "m", [a.id]) == {}
    emb.put(NS, "m", [(a.id, 2, vec(1))])
    assert emb.get(NS, "m", [a.id])[a.id][0] == 2
    kv.delete_many(NS, [a.id], [HistoryEntry(NS, a.id, (1.0,), 3, "deleted", None, None, 2.0)])
    assert emb.get(NS, "m", [a.id]) == {}  # deleted in the same transaction as the memory


def test_keyword_snapshot_answers_exactly_like_the_index_it_saved(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(18)]
    rng = random.Random(3)
    saved = InMemoryKeywordIndex(tmp_path)
    assert isinstance(saved, ISnapshotIndex)
    saved.index(
        NS, [(f"id{i}", " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))) for i in range(800)]
    )
    saved.index(NS, [(f"id{i}", "alpha alpha beta") for i in range(0, 300, 3)])  # replaced documents
    saved.remove(NS, [f"id{i}" for i in range(1, 300, 7)])
    saved.index("other", [("x", "hello world")])
    saved.set_checkpoint("feed", 42)
    saved.close()
    loaded = InMemoryKeywordIndex(tmp_path)
    assert loaded.checkpoints() == {NS: ("feed", 42), "other": ("feed", 42)}
    assert loaded.count(NS) == saved.count(NS)
    for index in (saved, loaded):  # then both change alike
        index.remove(NS, ["id0", "id3"])
        index.index(NS, [("id5", "omega"), ("new", "w0 w16")])
    for query in ("w0", "w1 w2", "w16 w17 w15", "omega", "alpha", "nothing"):
        a, b = saved.search(NS, query, 50), loaded.search(NS, query, 50)
        assert [h[0] for h in a] == [h[0] for h in b], query
        assert [h[1] for h in a] == pytest.approx([h[1] for h in b], rel=1e-5), query


def test_keyword_snapshot_of_an_emptied_namespace_is_removed(tmp_path: Path) -> None:
    index = InMemoryKeywordIndex(tmp_path)
    index.index(NS, [("a", "one")])
    index.close()
    again = InMemoryKeywordIndex(tmp_path)
    again.remove(NS, ["a"])
    again.close()
    assert InMemoryKeywordIndex(tmp_path).checkpoints() == {}


def test_checkpoints_order_views_of_one_feed_only() -> None:
    assert supersedes(("f", 9), ("f", 5)) and not supersedes(("f", 5), ("f", 5))
    assert (
        not supersedes(("f", 9), ("g", 1))
        and not supersedes(None, ("f", 1))
        and not supersedes(("f", 9), None)
    )
    assert file_checkpoint({"checkpoint": ["f", 3]}) == ("f", 3)
    assert file_checkpoint({"checkpoint": ["f", True]}) is None and file_checkpoint({}) is None
