"""The ``IVectorStore`` contract, run against every vector adapter.

Only the port is used: ``upsert``, ``delete``, ``search``, ``cosines``,
``versions``, ``count``. The base score is ``max(0, cosine) * importance_norm``; hits are
ordered by score, ties by id; type and payload filters apply before the
top-k cut; deletes and replacements are visible at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from somafractalmemory.adapters.memory.vectors import InMemoryVectorStore
from somafractalmemory.errors import InvalidInput
from somafractalmemory.interfaces.storage import IVectorStore, VectorPoint
from somafractalmemory.models import MemoryType

E, S = MemoryType.EPISODIC, MemoryType.SEMANTIC


def vec(dim: int, *values: float) -> np.ndarray:
    out = np.zeros(dim, dtype=np.float32)
    out[: len(values)] = values
    norm = np.linalg.norm(out)
    return out / norm if norm else out


def point(
    pid: str,
    vector: Any,
    imp: float = 1.0,
    mtype: MemoryType = E,
    version: int = 1,
    payload: dict[str, Any] | None = None,
) -> VectorPoint:
    return VectorPoint(pid, np.asarray(vector, dtype=np.float32), imp, mtype, version, payload or {})


def ids(hits: list[Any]) -> list[str]:
    return [h.id for h in hits]


def test_implements_the_port(vector_store: IVectorStore) -> None:
    assert isinstance(vector_store, IVectorStore)
    assert isinstance(vector_store.name, str) and vector_store.dim >= 2
    vector_store.health()


def test_base_score_is_clipped_cosine_times_importance(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    rng = np.random.default_rng(7)
    raw = rng.standard_normal((12, dim)).astype(np.float32)
    imps = rng.uniform(0.5, 1.0, 12)
    vector_store.upsert(
        namespace, [point(f"p{i}", raw[i] / np.linalg.norm(raw[i]), float(imps[i])) for i in range(12)]
    )
    query = rng.standard_normal(dim).astype(np.float32)
    hits = vector_store.search(namespace, query / np.linalg.norm(query), 12)
    assert len(hits) == 12
    unit_q = query / np.linalg.norm(query)
    for hit in hits:
        i = int(hit.id[1:])
        cos = float(raw[i] @ unit_q / np.linalg.norm(raw[i]))
        assert hit.cosine == pytest.approx(cos, abs=1e-5)
        assert hit.score == pytest.approx(max(0.0, cos) * imps[i], abs=1e-5)
        assert 0.0 <= hit.score <= 1.0
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert any(h.cosine < 0 and h.score == 0.0 for h in hits)  # negative cosine scores 0


def test_importance_reorders_equal_cosines(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    vector_store.upsert(
        namespace,
        [
            point("low", vec(dim, 1, 0), 0.5),
            point("high", vec(dim, 1, 0), 0.9),
            point("mid", vec(dim, 1, 1), 0.99),
        ],
    )
    hits = vector_store.search(namespace, vec(dim, 1, 0), 3)
    assert ids(hits) == ["high", "mid", "low"]
    assert hits[0].score == pytest.approx(0.9, abs=1e-6)
    assert hits[1].score == pytest.approx(0.99 * np.sqrt(0.5), abs=1e-6)


def test_ties_are_ordered_by_id_and_cut_by_id(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    same = vec(dim, 0, 1)
    vector_store.upsert(
        namespace,
        [point(pid, same, 0.75) for pid in ("d", "b", "e", "a", "c")]
        + [point("best", vec(dim, 0, 1), 0.8), point("far", vec(dim, 1, 0), 1.0)],
    )
    assert ids(vector_store.search(namespace, same, 7)) == ["best", "a", "b", "c", "d", "e", "far"]
    assert ids(vector_store.search(namespace, same, 3)) == ["best", "a", "b"]


def test_k_larger_than_count_and_k_zero(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    vector_store.upsert(namespace, [point("a", vec(dim, 1)), point("b", vec(dim, 0, 1))])
    assert sorted(ids(vector_store.search(namespace, vec(dim, 1, 1), 50))) == ["a", "b"]
    assert vector_store.search(namespace, vec(dim, 1), 0) == []
    assert vector_store.search("empty_" + namespace, vec(dim, 1), 5) == []


def _ranked(dim: int) -> list[VectorPoint]:
    """Ten points, p0 closest to the query ``vec(dim, 1)``, p9 farthest."""
    return [
        point(
            f"p{i}",
            vec(dim, 1, 0.1 * i),
            0.9,
            S if i < 4 else E,
            payload={
                "tag": "top" if i < 4 else "rest",
                "n": i,
                "meta": {"src": "a" if i % 2 else "b"},
                "tags": ["x", "even"] if i % 2 == 0 else ["x"],
            },
        )
        for i in range(10)
    ]


def test_memory_type_applies_before_top_k(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    vector_store.upsert(namespace, _ranked(dim))
    assert ids(vector_store.search(namespace, vec(dim, 1), 3, memory_type=E)) == ["p4", "p5", "p6"]
    assert ids(vector_store.search(namespace, vec(dim, 1), 10, memory_type=S)) == ["p0", "p1", "p2", "p3"]
    assert ids(vector_store.search(namespace, vec(dim, 1), 3)) == ["p0", "p1", "p2"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"tag": "rest"}, ["p4", "p5", "p6"]),
        ({"n": {"gte": 7}}, ["p7", "p8", "p9"]),
        ({"n": [9, 2, 5]}, ["p2", "p5", "p9"]),
        ({"meta.src": "a"}, ["p1", "p3", "p5"]),
        ({"tags": "even", "tag": "rest"}, ["p4", "p6", "p8"]),
        ({"n": {"ne": 0, "lt": 3}}, ["p1", "p2"]),
        ({"missing": 1}, []),
    ],
)
def test_payload_filters_apply_before_top_k(
    vector_store: IVectorStore, namespace: str, filters: dict[str, Any], expected: list[str]
) -> None:
    dim = vector_store.dim
    vector_store.upsert(namespace, _ranked(dim))
    assert ids(vector_store.search(namespace, vec(dim, 1), 3, filters=filters)) == expected


def test_upsert_replaces_vector_importance_and_payload(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    vector_store.upsert(
        namespace, [point("a", vec(dim, 1), 0.5, payload={"v": 1}), point("b", vec(dim, 0, 1), 0.6)]
    )
    vector_store.upsert(namespace, [point("a", vec(dim, 0, 1), 0.9, S, version=2, payload={"v": 2})])
    assert vector_store.count(namespace) == 2
    assert vector_store.versions(namespace) == {"a": 2, "b": 1}
    hits = vector_store.search(namespace, vec(dim, 1), 2)
    assert all(h.score == 0.0 for h in hits)  # nothing points along the old vector any more
    top = vector_store.search(namespace, vec(dim, 0, 1), 1)
    assert ids(top) == ["a"] and top[0].score == pytest.approx(0.9, abs=1e-6)
    assert ids(vector_store.search(namespace, vec(dim, 0, 1), 5, memory_type=S)) == ["a"]
    assert ids(vector_store.search(namespace, vec(dim, 0, 1), 5, filters={"v": 1})) == []
    assert ids(vector_store.search(namespace, vec(dim, 0, 1), 5, filters={"v": 2})) == ["a"]


def test_last_write_of_an_id_in_one_batch_wins(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    vector_store.upsert(namespace, [point("a", vec(dim, 1), 0.5), point("a", vec(dim, 0, 1), 0.7, version=3)])
    assert vector_store.count(namespace) == 1 and vector_store.versions(namespace) == {"a": 3}
    assert vector_store.search(namespace, vec(dim, 0, 1), 1)[0].score == pytest.approx(0.7, abs=1e-6)


def test_delete_is_honoured_immediately(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    vector_store.upsert(namespace, _ranked(dim))
    vector_store.delete(namespace, ["p0", "p2", "unknown"])
    assert vector_store.count(namespace) == 8
    assert ids(vector_store.search(namespace, vec(dim, 1), 3)) == ["p1", "p3", "p4"]
    assert "p0" not in vector_store.versions(namespace)
    vector_store.delete(namespace, [f"p{i}" for i in range(10)])
    assert vector_store.count(namespace) == 0
    assert vector_store.search(namespace, vec(dim, 1), 3) == []
    vector_store.delete("never_" + namespace, ["x"])  # unknown namespace: ignored


def test_namespaces_are_isolated(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    other = namespace + "_other"
    vector_store.upsert(namespace, [point("a", vec(dim, 1), 0.5)])
    vector_store.upsert(other, [point("a", vec(dim, 0, 1), 0.9, version=7), point("b", vec(dim, 1))])
    assert vector_store.count(namespace) == 1 and vector_store.count(other) == 2
    assert vector_store.versions(namespace) == {"a": 1}
    hit = vector_store.search(namespace, vec(dim, 1), 5)
    assert ids(hit) == ["a"] and hit[0].score == pytest.approx(0.5, abs=1e-6)
    vector_store.delete(other, ["a"])
    assert vector_store.count(namespace) == 1


def test_zero_vectors_score_zero(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    vector_store.upsert(
        namespace,
        [point("z", np.zeros(dim), 0.9), point("a", vec(dim, 1), 0.6), point("b", vec(dim, -1), 0.6)],
    )
    hits = vector_store.search(namespace, vec(dim, 1), 3)
    assert ids(hits) == ["a", "b", "z"]
    assert [h.score for h in hits][1:] == [0.0, 0.0]
    assert hits[2].cosine == 0.0 and hits[1].cosine == pytest.approx(-1.0, abs=1e-6)
    flat = vector_store.search(namespace, np.zeros(dim, dtype=np.float32), 3)
    assert ids(flat) == ["a", "b", "z"] and all(h.score == 0.0 for h in flat)


def test_versions_and_count(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    assert vector_store.count(namespace) == 0 and vector_store.versions(namespace) == {}
    vector_store.upsert(namespace, [point(f"m{i}", vec(dim, 1, i), version=i + 1) for i in range(5)])
    assert vector_store.count(namespace) == 5
    assert vector_store.versions(namespace) == {f"m{i}": i + 1 for i in range(5)}


@pytest.mark.parametrize(
    ("make", "imp", "field"),
    [
        (lambda dim: np.ones(dim - 1), 0.5, "points[1].vector"),
        (lambda dim: np.full(dim, np.nan), 0.5, "points[1].vector"),
        (lambda dim: vec(dim, 1), 1.5, "points[1].importance_norm"),
        (lambda dim: vec(dim, 1), -0.1, "points[1].importance_norm"),
    ],
    ids=["wrong-dim", "nan", "importance-above-1", "importance-below-0"],
)
def test_invalid_points_are_rejected(
    vector_store: IVectorStore, namespace: str, make: Any, imp: float, field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        vector_store.upsert(
            namespace, [point("ok", vec(vector_store.dim, 1)), point("a", make(vector_store.dim), imp)]
        )
    assert err.value.field == field
    assert vector_store.count(namespace) == 0  # the batch is rejected as a whole


def test_invalid_queries_are_rejected(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    with pytest.raises(InvalidInput):
        vector_store.search(namespace, np.ones(dim + 1, dtype=np.float32), 3)
    with pytest.raises(InvalidInput):
        vector_store.search(namespace, vec(dim, 1), -1)
    with pytest.raises(InvalidInput):
        vector_store.search(namespace, vec(dim, 1), 3, filters={"n": {"between": 1}})
    with pytest.raises(InvalidInput):
        vector_store.upsert("", [point("a", vec(dim, 1))])


def test_congruent_with_the_reference(vector_store: IVectorStore, namespace: str) -> None:
    """A random history of writes gives the same hits as the reference store."""
    dim = vector_store.dim
    reference = InMemoryVectorStore(dim)
    rng = np.random.default_rng(11)
    for step in range(6):
        batch = [
            point(
                f"id{int(j)}",
                rng.standard_normal(dim),
                float(rng.uniform(0.5, 1)),
                S if j % 3 == 0 else E,
                step + 1,
                {"g": int(j % 4)},
            )
            for j in rng.integers(0, 60, 25)
        ]
        doomed = [f"id{int(j)}" for j in rng.integers(0, 60, 6)]
        for store in (vector_store, reference):
            store.upsert(namespace, batch)
            store.delete(namespace, doomed)
    assert vector_store.versions(namespace) == reference.versions(namespace)
    for _ in range(10):
        query = rng.standard_normal(dim).astype(np.float32)
        for kwargs in ({}, {"memory_type": S}, {"filters": {"g": [1, 2]}}):
            got = vector_store.search(namespace, query, 7, **kwargs)
            want = reference.search(namespace, query, 7, **kwargs)
            assert ids(got) == ids(want)
            assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)


def test_cosines_of_given_ids(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    vector_store.upsert(
        namespace,
        [
            point("a", vec(dim, 1), 0.5),
            point("b", vec(dim, 1, 1), 0.9),
            point("c", vec(dim, -1)),
            point("z", np.zeros(dim)),
        ],
    )
    got = vector_store.cosines(namespace, vec(dim, 1), ["b", "c", "z", "missing", "a"])
    assert set(got) == {"a", "b", "c", "z"}
    assert got["a"] == pytest.approx(1.0, abs=1e-6) and got["c"] == pytest.approx(-1.0, abs=1e-6)
    assert got["b"] == pytest.approx(np.sqrt(0.5), abs=1e-6) and got["z"] == 0.0
    assert vector_store.cosines(namespace, vec(dim, 1), []) == {}
    assert vector_store.cosines("other_" + namespace, vec(dim, 1), ["a"]) == {}
