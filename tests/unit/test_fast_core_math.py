"""The invariants of ``docs/FAST_CORE_MATH.md``, one test each.

Brute force in float64 (numpy, written here) is the oracle; the fast core
computes in float32, so scores agree to 1e-6.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from somafractalmemory.fastcore import AnnParams, FastCoreVectorStore, ann_available
from somafractalmemory.fastcore.ann import AnnIndex
from somafractalmemory.fastcore.slab import top_rows
from somafractalmemory.interfaces.storage import VectorPoint
from somafractalmemory.models import MemoryType, importance_norm, matches_filters

NS = "math"
TYPES = (MemoryType.EPISODIC, MemoryType.SEMANTIC)
needs_ann = pytest.mark.skipif(not ann_available(), reason="usearch is not installed (extra 'ann')")
finite = st.floats(-10, 10, allow_nan=False, width=32)
vectors8 = arrays(np.float32, 8, elements=finite)
importances = st.floats(0, 1e6, allow_nan=False)


def unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return np.divide(a, n, out=np.zeros_like(a), where=n > 0)


def embedding_like(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors near a random 32-d subspace (as sentence embeddings are)."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).standard_normal((dim, 32))
    return unit(rng.standard_normal((n, 32)) @ basis.T + 0.3 * rng.standard_normal((n, dim))).astype(
        np.float32
    )


def make_points(vectors: np.ndarray, seed: int = 0) -> list[VectorPoint]:
    rng = np.random.default_rng(seed)
    return [
        VectorPoint(
            f"id{i:06d}",
            v,
            importance_norm(float(rng.integers(0, 20))),
            TYPES[i % 2],
            1,
            {"n": i, "g": int(rng.integers(0, 100))},
        )
        for i, v in enumerate(vectors)
    ]


def brute_force(
    points: list[VectorPoint], query: np.ndarray, k: int, memory_type: Any = None, filters: Any = None
) -> list[tuple[str, float]]:
    keep = [
        p
        for p in points
        if (memory_type is None or p.memory_type is memory_type) and matches_filters(p.payload, filters)
    ]
    if not keep:
        return []
    cos = unit(np.stack([p.vector for p in keep])) @ unit(query)
    scored = [(p.id, max(0.0, float(c)) * p.importance_norm) for p, c in zip(keep, cos, strict=True)]
    return sorted(scored, key=lambda t: (-t[1], t[0]))[:k]


def one_point_score(vector: np.ndarray, query: np.ndarray, imp: float) -> tuple[float, float]:
    store = FastCoreVectorStore(8)
    store.upsert(NS, [VectorPoint("p", vector, importance_norm(imp), MemoryType.EPISODIC)])
    hit = store.search(NS, query, 1)[0]
    return hit.score, hit.cosine


@settings(max_examples=200, deadline=None)
@given(vectors8, vectors8, importances)
def test_score_is_in_unit_interval(vector: np.ndarray, query: np.ndarray, imp: float) -> None:
    score, cosine = one_point_score(vector, query, imp)
    assert 0.0 <= score <= 1.0 and -1.0 <= cosine <= 1.0


@settings(max_examples=200, deadline=None)
@given(vectors8, vectors8, importances)
def test_score_is_clipped_cosine_times_importance_norm(
    vector: np.ndarray, query: np.ndarray, imp: float
) -> None:
    score, cosine = one_point_score(vector, query, imp)
    expected_cos = float(unit(vector) @ unit(query))
    assert cosine == pytest.approx(expected_cos, abs=1e-5)
    assert score == pytest.approx(max(0.0, expected_cos) * (1 + imp) / (2 + imp), abs=1e-5)


@settings(max_examples=100, deadline=None)
@given(vectors8, vectors8, importances, importances)
def test_score_is_monotone_in_importance(vector: np.ndarray, query: np.ndarray, a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert importance_norm(low) <= importance_norm(high)
    store = FastCoreVectorStore(8)
    store.upsert(
        NS,
        [
            VectorPoint("low", vector, importance_norm(low), MemoryType.EPISODIC),
            VectorPoint("high", vector, importance_norm(high), MemoryType.EPISODIC),
        ],
    )
    scores = {h.id: h.score for h in store.search(NS, query, 2)}
    assert scores["low"] <= scores["high"]


@settings(max_examples=100, deadline=None)
@given(vectors8, vectors8, st.floats(0, 1, allow_nan=False))
def test_prescaling_turns_inner_product_into_base_score(v: np.ndarray, q: np.ndarray, imp: float) -> None:
    cos = float(unit(v) @ unit(q))
    assert float(unit(q) @ (unit(v) * imp)) == pytest.approx(cos * imp, abs=1e-9)
    if cos > 0:
        assert max(0.0, float(unit(q) @ (unit(v) * imp))) == pytest.approx(max(0.0, cos) * imp, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=1, max_size=40), st.integers(1, 45))
def test_top_rows_is_the_full_sort_by_score_then_id(values: list[float], k: int) -> None:
    scores = np.asarray(values, dtype=np.float32)
    ids = [f"{(i * 7919) % 101:03d}" for i in range(len(values))]  # distinct, not in row order
    expected = sorted(range(len(values)), key=lambda i: (-values[i], ids[i]))[:k]
    by_id = np.asarray(sorted(range(len(values)), key=ids.__getitem__), dtype=np.intp)
    assert top_rows(scores, k, ids) == expected
    assert top_rows(scores, k, ids, lambda: by_id) == expected  # score-0 rows taken in id order
    scores[::3] = -1.0  # filtered-out rows never come back
    kept = [i for i in range(len(values)) if i % 3]
    assert top_rows(scores, k, ids) == sorted(kept, key=lambda i: (-values[i], ids[i]))[:k]
    assert top_rows(scores, k, ids, lambda: by_id) == top_rows(scores, k, ids)


def test_exact_search_with_many_zero_scores_stays_exact_across_writes() -> None:
    """Queries that few rows match make ``Slab`` choose score-0 rows by id from
    a cached id order once several searches needed them; inserts and deletes
    drop that order. Every answer equals the brute-force sort."""
    rng = np.random.default_rng(11)
    store = FastCoreVectorStore(16, ann_threshold=10**9)
    live: dict[str, np.ndarray] = {}

    def put(n: int) -> None:
        points = []
        for _ in range(n):
            pid = f"p{rng.integers(10**9):09d}"
            vec = np.zeros(16, dtype=np.float32)
            vec[rng.integers(16)] = 1.0  # one-hot: a one-hot query matches 1/16 of the rows
            live[pid] = vec
            points.append(VectorPoint(pid, vec, 0.75, MemoryType.EPISODIC))
        store.upsert("ns", points)

    put(300)
    for step in range(40):
        query = np.zeros(16, dtype=np.float32)
        query[rng.integers(16)] = 1.0
        expected = sorted(live, key=lambda i: (-max(0.0, float(live[i] @ query)) * 0.75, i))[:60]
        assert [h.id for h in store.search("ns", query, 60)] == expected, step
        if step == 11:
            assert store._spaces["ns"].slab._by_id is not None  # the cached order is in use
        if step % 15 == 14:
            put(5)
        if step % 15 == 12:
            gone = sorted(live)[:3]
            store.delete("ns", gone)
            for pid in gone:
                live.pop(pid)


def test_sparse_queries_read_only_their_columns_and_rank_as_brute_force() -> None:
    """A query with few non-zero components (``dim / 32`` or fewer) is
    multiplied column by column; rows sharing none of its components score
    exactly 0 and are ordered by id, as in the full product."""
    rng = np.random.default_rng(17)
    dim, n = 256, 3000
    data = np.zeros((n, dim), dtype=np.float32)
    for row in data:  # ten signed components per row, like a short text under feature hashing
        row[rng.choice(dim, 10, replace=False)] = rng.standard_normal(10)
    points = make_points(data)
    store = FastCoreVectorStore(dim, ann_threshold=10**9)
    store.upsert(NS, points)
    slab = store._spaces[NS].slab
    for nonzero in (1, 2, 3, 5, 8, 40):  # 8 * 32 == 256: the last sparse count; 40 is dense
        for _ in range(5):
            query = np.zeros(dim, dtype=np.float32)
            query[rng.choice(dim, nonzero, replace=False)] = rng.standard_normal(nonzero)
            unit = query / np.linalg.norm(query)
            full = data[:n] / np.linalg.norm(data, axis=1, keepdims=True) @ unit
            assert slab.cosines(unit) == pytest.approx(full, abs=1e-6)
            assert np.array_equal(slab.cosines(unit) > 0, full > 0)
            for k in (5, 50, 400):
                got = store.search(NS, query, k)
                want = brute_force(points, query, k, None, None)
                assert [h.id for h in got] == [i for i, _ in want], (nonzero, k)


@pytest.mark.parametrize("filters", [None, {"g": {"lt": 50}}, {"g": 7}, {"g": [3, 97]}, {"n": {"gte": 1990}}])
@pytest.mark.parametrize("memory_type", [None, MemoryType.SEMANTIC])
def test_exact_search_equals_brute_force(filters: Any, memory_type: Any) -> None:
    rng = np.random.default_rng(3)
    points = make_points(rng.standard_normal((2000, 32)).astype(np.float32))
    store = FastCoreVectorStore(32)
    store.upsert(NS, points)
    for _ in range(20):
        query = rng.standard_normal(32).astype(np.float32)
        for k in (1, 10, 60):
            got = store.search(NS, query, k, memory_type=memory_type, filters=filters)
            want = brute_force(points, query, k, memory_type, filters)
            assert [h.id for h in got] == [i for i, _ in want]
            assert [h.score for h in got] == pytest.approx([s for _, s in want], abs=1e-6)


@needs_ann
def test_ann_top10_overlaps_exact_top10() -> None:
    n, dim, queries = 20_000, 128, 200  # 384-d at 100k: benchmarks/fast_core_smoke.py --ann-check
    data = embedding_like(n + queries, dim, seed=5)
    points = make_points(data[:n])
    store = FastCoreVectorStore(dim, ann_background=False)  # default threshold: 20,000
    store.upsert(NS, points)
    imp = np.asarray([p.importance_norm for p in points])
    exact = np.clip(data[n:] @ data[:n].T, 0, 1) * imp
    overlap = 0
    for q, row in zip(data[n:], exact, strict=True):
        truth = {f"id{i:06d}" for i in np.argpartition(-row, 9)[:10]}
        overlap += len(truth & {h.id for h in store.search(NS, q, 10)})
    assert store.search_counts == {"ann": queries, "exact": 0}
    assert overlap / (10 * queries) >= 0.95


@needs_ann
def test_a_graph_built_by_one_thread_is_the_same_every_time() -> None:
    """``AnnParams.threads=1``: the same points give the same candidates in
    every build (with one thread per core the graph depends on their timing)."""
    rng = np.random.default_rng(3)
    data = unit(rng.standard_normal((2000, 16))).astype(np.float32)
    keys = np.arange(2000, dtype=np.uint64)
    queries = rng.standard_normal((50, 16)).astype(np.float32)
    params = AnnParams(threads=1, expansion_search=16)

    def candidates() -> list[list[int]]:
        index = AnnIndex(16, params)
        index.add(keys, data)
        return [index.search(q, 10) for q in queries]

    first = candidates()
    assert all(candidates() == first for _ in range(5))


@needs_ann
def test_ann_falls_back_to_exact_when_it_cannot_reach_the_target() -> None:
    rng = np.random.default_rng(1)
    points = make_points(unit(rng.standard_normal((3000, 64))).astype(np.float32))
    params = AnnParams(threshold=100, expansion_search=8, max_expansion=8, target_overlap=0.99)
    store = FastCoreVectorStore(64, ann_params=params, ann_background=False)
    store.upsert(NS, points)
    for _ in range(5):
        query = rng.standard_normal(64).astype(np.float32)
        assert [h.id for h in store.search(NS, query, 10)] == [i for i, _ in brute_force(points, query, 10)]
    assert store.search_counts == {"ann": 0, "exact": 5}
    assert store.index_info(NS) == {
        "points": 3000,
        "ann": False,
        "ann_building": False,
        "expansion_search": None,
    }


@needs_ann
def test_ann_is_built_in_the_background_while_exact_search_serves() -> None:
    points = make_points(embedding_like(3000, 64, seed=2))
    store = FastCoreVectorStore(64, ann_threshold=1000)
    store.upsert(NS, points)
    query = embedding_like(1, 64, seed=9)[0]
    with store._lock:  # the build cannot install itself before the writes below
        first = store.search(NS, query, 5)  # starts the build, answers exactly
        builder = store._spaces[NS].builder
        assert builder is not None and store.search_counts == {"ann": 0, "exact": 1}
        store.upsert(NS, [VectorPoint("new", query, 0.99, MemoryType.EPISODIC)])
        store.delete(NS, [first[0].id])
    assert [h.id for h in first] == [i for i, _ in brute_force(points, query, 5)]
    builder.join(timeout=120)
    hits = store.search(NS, query, 5)  # through the index, which saw both writes
    assert store.search_counts["ann"] == 1
    assert hits[0].id == "new" and first[0].id not in {h.id for h in hits}
    store.close()


def indexed_store(n: int, seed: int) -> tuple[np.ndarray, list[VectorPoint], FastCoreVectorStore]:
    """``n`` 32-d points in a store whose ANN index is built (synchronously)."""
    data = embedding_like(n, 32, seed=seed)
    points = make_points(data)
    store = FastCoreVectorStore(32, ann_threshold=1000, ann_background=False)
    store.upsert(NS, points)
    store.search(NS, data[0], 5)  # builds the index
    return data, points, store


@needs_ann
def test_removed_keys_leave_the_graph_in_batches_and_are_never_returned_as_hits() -> None:
    from somafractalmemory.fastcore import ann as ann_module

    data, points, store = indexed_store(6000, seed=6)
    query = data[7]
    index = store._spaces[NS].ann
    assert index is not None
    in_graph = len(index._index)
    moved = [VectorPoint(p.id, -p.vector, p.importance_norm, p.memory_type) for p in points[:10]]
    store.upsert(NS, moved)  # ten updates: ten keys removed, still in the graph
    assert len(index._index) == in_graph + 10 and len(index) == in_graph and index.removed == 10
    hits = store.search(NS, query, 5)
    assert store.search_counts["ann"] == 2
    assert points[7].id not in {h.id for h in hits}  # its old vector (the query) is stale
    assert [h.id for h in hits] == [i for i, _ in brute_force(store_points(store), query, 5)]
    more = ann_module._REMOVE_BATCH
    store.upsert(NS, [VectorPoint(p.id, p.vector, 0.5, p.memory_type) for p in points[10 : 10 + more]])
    assert len(index._index) == in_graph + 10 + more - (10 + more) == in_graph == len(index)
    store.close()


@needs_ann
def test_a_rewrite_with_the_same_vector_keeps_its_index_entry() -> None:
    data, points, store = indexed_store(3000, seed=12)
    hits = store.search(NS, data[3], 10)
    index, slab = store._spaces[NS].ann, store._spaces[NS].slab
    assert index is not None
    in_graph, key = len(index._index), int(slab.keys[slab.rows[points[3].id]])
    same = points[3]
    store.upsert(
        NS, [VectorPoint(same.id, same.vector.copy(), same.importance_norm, same.memory_type, 7, {"v": 7})]
    )
    assert int(slab.keys[slab.rows[same.id]]) == key and len(index._index) == in_graph and index.removed == 0
    assert store.versions(NS, [same.id]) == {same.id: 7} and slab.payloads[slab.rows[same.id]] == {"v": 7}
    assert same.id in {h.id for h in hits}
    assert store.search(NS, data[3], 10) == hits and store.search_counts["ann"] == 3
    for changed in (
        VectorPoint(same.id, -same.vector, same.importance_norm, same.memory_type, 8),  # a new vector
        VectorPoint(
            same.id, -same.vector, same.importance_norm / 2 + 0.01, same.memory_type, 9
        ),  # importance
    ):
        before = int(slab.keys[slab.rows[same.id]])
        store.upsert(NS, [changed])
        assert int(slab.keys[slab.rows[same.id]]) != before
    assert index.removed == 2 and same.id not in {h.id for h in store.search(NS, data[3], 10)}
    store.close()


def store_points(store: FastCoreVectorStore) -> list[VectorPoint]:
    slab = store._spaces[NS].slab
    return [
        VectorPoint(pid, slab.vectors[row].copy(), float(slab.importance[row]), MemoryType.EPISODIC)
        for row, pid in enumerate(slab.ids)
    ]


@needs_ann
def test_a_stale_saved_index_is_reconciled_on_load(tmp_path: Path) -> None:
    points = make_points(embedding_like(2000, 32, seed=6))
    store = FastCoreVectorStore(32, tmp_path, ann_threshold=500, ann_background=False)
    store.upsert(NS, points)
    query = embedding_like(1, 32, seed=10)[0]
    store.search(NS, query, 3)  # builds the index
    store.flush()
    old_index = (tmp_path / f"{NS}.ann.usearch").read_bytes()
    store.upsert(NS, [VectorPoint("new", query, 0.99, MemoryType.EPISODIC)])
    store.delete(NS, [points[0].id])
    store.close()
    (tmp_path / f"{NS}.ann.usearch").write_bytes(old_index)  # as if the process died between the files
    again = FastCoreVectorStore(32, tmp_path, ann_threshold=500, ann_background=False)
    hits = again.search(NS, query, 3)
    assert again.search_counts == {"ann": 1, "exact": 0}
    assert hits[0].id == "new" and all(h.id != points[0].id for h in again.search(NS, points[0].vector, 10))


@needs_ann
def test_a_bulk_load_drops_the_index_and_the_next_search_rebuilds_it() -> None:
    data = embedding_like(13_000, 16, seed=12)
    store = FastCoreVectorStore(16, ann_threshold=1000, ann_background=False)
    store.upsert(NS, make_points(data[:2000]))
    store.search(NS, data[0], 5)
    assert store.index_info(NS)["ann"]
    bulk = [VectorPoint(f"bulk{i}", v, 0.99, MemoryType.SEMANTIC) for i, v in enumerate(data[2000:])]
    store.upsert(NS, bulk)
    assert store.index_info(NS) == {
        "points": 13_000,
        "ann": False,
        "ann_building": False,
        "expansion_search": None,
    }
    hits = store.search(NS, data[5000], 3)
    assert store.index_info(NS)["ann"] and store.search_counts["ann"] == 2
    assert hits[0].id == "bulk3000"


@pytest.mark.parametrize("ann", [False, True])
def test_persistence_round_trip_gives_identical_results(tmp_path: Path, ann: bool) -> None:
    if ann and not ann_available():
        pytest.skip("usearch is not installed")
    points = make_points(embedding_like(1500, 48, seed=4))
    store = FastCoreVectorStore(48, tmp_path, ann=ann, ann_threshold=500, ann_background=False)
    store.upsert(NS, points)
    store.upsert("other", points[:10])
    store.delete(NS, [p.id for p in points[::7]])
    store.upsert(NS, [VectorPoint(points[1].id, points[2].vector, 0.99, MemoryType.SEMANTIC, 5, {"x": 1})])
    queries = embedding_like(30, 48, seed=8)
    before = [store.search(NS, q, 10) for q in queries]
    filtered = [store.search(NS, q, 10, filters={"g": {"gte": 50}}) for q in queries]
    versions, counts = store.versions(NS), dict(store.search_counts)
    store.close()
    files = [p for p in tmp_path.iterdir() if p.name != ".lock"]  # the directory lock (files.dir_lock)
    assert sorted(p.name.split(".", 1)[1] for p in files) == sorted(
        ["slab.npz", "slab.npz"] + (["ann.usearch"] if ann else [])
    )
    again = FastCoreVectorStore(48, tmp_path, ann=ann, ann_threshold=500, ann_background=False)
    assert again.versions(NS) == versions and again.count("other") == 10
    assert [again.search(NS, q, 10) for q in queries] == before
    assert [again.search(NS, q, 10, filters={"g": {"gte": 50}}) for q in queries] == filtered
    assert (counts["ann"] > 0) is ann and (again.search_counts["ann"] > 0) is ann
    again.close()


ops = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), st.integers(0, 14), vectors8, st.floats(0, 1), st.integers(1, 9)),
        st.tuples(st.just("delete"), st.integers(0, 14)),
    ),
    max_size=60,
)


@pytest.mark.parametrize("ann", [False, True])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=ops, query=vectors8)
def test_deletes_and_updates_never_leave_stale_hits(ann: bool, history: list[Any], query: np.ndarray) -> None:
    if ann and not ann_available():
        pytest.skip("usearch is not installed")
    store = FastCoreVectorStore(8, ann_params=AnnParams(threshold=1, oversample=2), ann_background=False)
    model: dict[str, VectorPoint] = {}
    for step, op in enumerate(history):
        pid = f"p{op[1]}"
        if op[0] == "upsert":
            model[pid] = VectorPoint(pid, op[2], op[3], TYPES[step % 2], op[4])
            store.upsert(NS, [model[pid]])
        else:
            model.pop(pid, None)
            store.delete(NS, [pid])
        if step % 5 == 4:
            store.search(NS, query, 3)  # interleave searches so the ANN index exists mid-history
    assert store.count(NS) == len(model)
    assert store.versions(NS) == {pid: p.version for pid, p in model.items()}
    want = dict(brute_force(list(model.values()), query, len(model)))
    for k in (1, 2, 5, 20):
        hits = store.search(NS, query, k)
        assert len(hits) == min(k, len(model))
        for hit in hits:  # live, and scored from its current vector and importance
            assert hit.score == pytest.approx(want[hit.id], abs=1e-5)
        if not ann:  # the exact ranking, up to the order of scores tied within float32 rounding
            expected = brute_force(list(model.values()), query, k)
            assert [h.score for h in hits] == pytest.approx([sc for _, sc in expected], abs=1e-6)
            for hit, (pid, sc) in zip(hits, expected, strict=True):
                assert hit.id == pid or abs(want[hit.id] - sc) <= 1e-6


def test_without_usearch_the_fast_core_is_exact_and_says_so_once() -> None:
    script = """
import logging, sys
import numpy as np
sys.modules["usearch"] = None
sys.modules["usearch.index"] = None
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from somafractalmemory.fastcore import FastCoreVectorStore, ann_available
from somafractalmemory.interfaces.storage import VectorPoint
from somafractalmemory.models import MemoryType
assert not ann_available()
store = FastCoreVectorStore(4, ann_threshold=1, ann_background=False)
store.upsert("n", [VectorPoint(f"p{i}", np.eye(4, dtype=np.float32)[i % 4], 0.5, MemoryType.EPISODIC)
                   for i in range(40)])
FastCoreVectorStore(4)
for _ in range(3):
    assert [h.id for h in store.search("n", np.eye(4, dtype=np.float32)[1], 2)] == ["p1", "p13"]
assert store.search_counts == {"ann": 0, "exact": 3}, store.search_counts
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("pip install 'somafractalmemory[ann]'") == 1, done.stderr
    logging.getLogger(__name__).debug(done.stderr)
