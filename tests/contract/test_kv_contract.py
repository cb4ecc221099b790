"""Contract of ``IKeyValueStore``: every canonical store behaves the same."""

from __future__ import annotations

import time
from typing import Any

import pytest

from somafractalmemory.errors import InvalidInput, WriteConflict
from somafractalmemory.interfaces.storage import IKeyValueStore
from somafractalmemory.models import HistoryEntry, Memory, MemoryType, memory_id

EPISODIC, SEMANTIC = MemoryType.EPISODIC, MemoryType.SEMANTIC


def mem(
    ns: str,
    coord: tuple[float, ...],
    payload: dict[str, Any] | None = None,
    kind: MemoryType = EPISODIC,
    created: float = 1000.0,
    updated: float | None = None,
    version: int = 1,
) -> Memory:
    return Memory(
        id=memory_id(ns, coord),
        namespace=ns,
        coordinate=coord,
        payload=payload if payload is not None else {"text": f"at {coord}"},
        memory_type=kind,
        created_at=created,
        updated_at=created if updated is None else updated,
        version=version,
    )


def record(m: Memory, action: str, at: float) -> HistoryEntry:
    payload = None if action == "deleted" else m.payload
    kind = None if action == "deleted" else m.memory_type
    return HistoryEntry(m.namespace, m.id, m.coordinate, m.version, action, payload, kind, at)


def put(kv: IKeyValueStore, *memories: Memory) -> None:
    kv.put_many(list(memories), [record(m, "created", m.updated_at) for m in memories])


def coords(memories: list[Memory]) -> list[tuple[float, ...]]:
    return [m.coordinate for m in memories]


def test_adapter_implements_the_port(kv_store: IKeyValueStore) -> None:
    assert isinstance(kv_store, IKeyValueStore)
    assert isinstance(kv_store.name, str) and kv_store.name
    kv_store.health()


def test_put_then_get_round_trips_every_field(kv_store: IKeyValueStore, namespace: str) -> None:
    payload = {"text": "héllo ✓", "n": 3, "x": 1.5, "nested": {"a": [1, None, True]}, "tags": ["a"]}
    m = mem(namespace, (1.0, -2.5, 3.25), payload, SEMANTIC, created=10.5, updated=20.25, version=3)
    put(kv_store, m)
    got = kv_store.get_many(namespace, [m.id])
    assert got == {m.id: m}
    assert got[m.id].coordinate == (1.0, -2.5, 3.25)
    assert got[m.id].memory_type is SEMANTIC


def test_returned_memories_are_not_aliases_of_the_store(kv_store: IKeyValueStore, namespace: str) -> None:
    m = mem(namespace, (1.0,), {"text": "a", "list": [1]})
    put(kv_store, m)
    m.payload["text"] = "changed by the caller"
    kv_store.get_many(namespace, [m.id])[m.id].payload["list"].append(2)
    kv_store.find_range(namespace, (0.0,), (2.0,))[0].payload["list"].append(3)
    next(iter(kv_store.iter_memories(namespace))).payload["text"] = "changed"
    kv_store.recent(namespace, 1)[0].payload.clear()
    kv_store.important(namespace, 1)[0].payload.clear()
    assert kv_store.get_many(namespace, [m.id])[m.id].payload == {"text": "a", "list": [1]}


def test_upsert_replaces_by_id(kv_store: IKeyValueStore, namespace: str) -> None:
    old = mem(namespace, (1.0, 2.0), {"text": "old", "gone": True})
    put(kv_store, old)
    new = mem(namespace, (1.0, 2.0), {"text": "new"}, SEMANTIC, created=1000.0, updated=2000.0, version=2)
    put(kv_store, new)
    assert kv_store.get_many(namespace, [old.id]) == {old.id: new}
    assert kv_store.counts(namespace) == {"total": 1, "episodic": 0, "semantic": 1}


def test_expect_previous_writes_only_over_the_version_before(
    kv_store: IKeyValueStore, namespace: str
) -> None:
    def write(*memories: Memory) -> None:
        history = [record(m, "updated" if m.version > 1 else "created", m.updated_at) for m in memories]
        kv_store.put_many(list(memories), history, expect_previous=True)

    a1, b1 = mem(namespace, (1.0,), {"text": "a1"}), mem(namespace, (2.0,), {"text": "b1"})
    write(a1, b1)  # new memories: version 1
    with pytest.raises(WriteConflict):
        write(mem(namespace, (1.0,), {"text": "a1 again"}))  # a version 1 over an existing memory
    a2 = mem(namespace, (1.0,), {"text": "a2"}, updated=2000.0, version=2)
    write(a2)
    for stale in (a2, mem(namespace, (1.0,), {"text": "a4"}, version=4)):  # the same again; a version skipped
        with pytest.raises(WriteConflict):
            write(stale)
    c1 = mem(namespace, (3.0,), {"text": "c1"})
    with pytest.raises(WriteConflict):  # one stale memory: nothing of the batch is written
        write(c1, mem(namespace, (2.0,), {"text": "b3"}, version=3))
    assert kv_store.get_many(namespace, [a1.id, b1.id, c1.id]) == {a1.id: a2, b1.id: b1}
    assert [h.version for h in kv_store.history(namespace, a1.id)] == [1, 2]
    assert [h.version for h in kv_store.history(namespace, b1.id)] == [1]
    assert kv_store.history(namespace, c1.id) == []
    write(c1, mem(namespace, (2.0,), {"text": "b2"}, version=2))
    assert kv_store.get_many(namespace, [b1.id])[b1.id].payload == {"text": "b2"}
    kv_store.delete_many(namespace, [c1.id], [record(c1, "deleted", 3000.0)])
    with pytest.raises(WriteConflict):  # read before a delete: not written as if it still existed
        write(mem(namespace, (3.0,), {"text": "c2"}, version=2))
    assert kv_store.get_many(namespace, [c1.id]) == {}
    put(kv_store, mem(namespace, (1.0,), {"text": "restored"}, version=9))  # without it: any version


def test_same_id_twice_in_one_batch_keeps_the_last(kv_store: IKeyValueStore, namespace: str) -> None:
    a = mem(namespace, (5.0,), {"text": "first"})
    b = mem(namespace, (5.0,), {"text": "second"}, version=2)
    put(kv_store, a, b)
    assert kv_store.get_many(namespace, [a.id])[a.id].payload == {"text": "second"}


def test_namespaces_are_isolated(kv_store: IKeyValueStore, namespace: str) -> None:
    other = namespace + "_other"
    mine, theirs = mem(namespace, (1.0,)), mem(other, (1.0,), {"text": "theirs"})
    put(kv_store, mine, theirs)
    assert set(kv_store.get_many(namespace, [mine.id, theirs.id])) == {mine.id}
    assert kv_store.get_many(other, [mine.id]) == {}
    assert kv_store.delete_many(other, [mine.id], []) == []
    assert [m.id for m in kv_store.iter_memories(namespace)] == [mine.id]
    assert coords(kv_store.find_range(other, (0.0,), (2.0,))) == [(1.0,)]
    assert kv_store.find_range(other, (0.0,), (2.0,))[0].payload == {"text": "theirs"}
    assert kv_store.filter_ids(namespace, None) == {mine.id}
    assert [m.id for m in kv_store.recent(namespace, 5)] == [mine.id]
    assert kv_store.counts(other)["total"] == 1
    assert {namespace, other} <= set(kv_store.namespaces())


def test_get_many_leaves_out_absent_ids(kv_store: IKeyValueStore, namespace: str) -> None:
    m = mem(namespace, (1.0,))
    put(kv_store, m)
    assert kv_store.get_many(namespace, ["absent", m.id, "also-absent"]) == {m.id: m}
    assert kv_store.get_many(namespace, []) == {}
    assert kv_store.get_many(namespace + "_empty", [m.id]) == {}


def test_get_many_with_many_ids(kv_store: IKeyValueStore, namespace: str) -> None:
    batch = [mem(namespace, (float(i),)) for i in range(1200)]
    put(kv_store, *batch)
    wanted = [m.id for m in batch[::2]] + ["absent"]
    assert set(kv_store.get_many(namespace, wanted)) == {m.id for m in batch[::2]}


def test_delete_many_returns_deleted_ids_and_records_history(
    kv_store: IKeyValueStore, namespace: str
) -> None:
    a, b, c = (mem(namespace, (float(i),), created=100.0 + i) for i in range(3))
    put(kv_store, a, b, c)
    deleted = kv_store.delete_many(
        namespace, [c.id, "absent", a.id], [record(c, "deleted", 500.0), record(a, "deleted", 500.0)]
    )
    assert sorted(deleted) == sorted([a.id, c.id])
    assert kv_store.get_many(namespace, [a.id, b.id, c.id]) == {b.id: b}
    assert kv_store.counts(namespace)["total"] == 1
    history = kv_store.history(namespace, a.id)
    assert [h.action for h in history] == ["created", "deleted"]
    assert history[-1].changed_at == 500.0 and history[-1].payload is None
    assert kv_store.delete_many(namespace, [a.id], []) == []


def test_history_is_ordered_and_kept_after_delete(kv_store: IKeyValueStore, namespace: str) -> None:
    v1 = mem(namespace, (1.0, 1.0), {"text": "v1"}, created=10.0)
    v2 = mem(namespace, (1.0, 1.0), {"text": "v2"}, created=10.0, updated=20.0, version=2)
    kv_store.put_many([v1], [record(v1, "created", 10.0)])
    kv_store.put_many([v2], [record(v2, "updated", 20.0)])
    kv_store.delete_many(namespace, [v1.id], [record(v2, "deleted", 30.0)])
    history = kv_store.history(namespace, v1.id)
    assert [(h.action, h.version, h.changed_at) for h in history] == [
        ("created", 1, 10.0),
        ("updated", 2, 20.0),
        ("deleted", 2, 30.0),
    ]
    assert history[1].payload == {"text": "v2"}
    assert history[1].memory_type is EPISODIC
    assert history[0].coordinate == (1.0, 1.0)
    assert kv_store.history(namespace, "absent") == []
    assert kv_store.history(namespace + "_other", v1.id) == []


def test_history_entry_round_trips(kv_store: IKeyValueStore, namespace: str) -> None:
    m = mem(namespace, (2.0,))
    entry = HistoryEntry(
        namespace,
        m.id,
        m.coordinate,
        4,
        "updated",
        {"text": "x"},
        SEMANTIC,
        42.5,
        actor="api:key1",
        changed_keys=["text", "importance"],
    )
    kv_store.put_many([m], [entry])
    assert kv_store.history(namespace, m.id) == [entry]


def test_iter_history_is_oldest_first_across_memories(kv_store: IKeyValueStore, namespace: str) -> None:
    a, b = mem(namespace, (1.0,)), mem(namespace, (2.0,))
    kv_store.put_many([a, b], [record(b, "created", 2.0), record(a, "created", 1.0)])
    kv_store.put_many([a], [record(a, "updated", 3.0)])
    kv_store.put_many(
        [mem(namespace + "_x", (1.0,))], [record(mem(namespace + "_x", (1.0,)), "created", 0.5)]
    )
    assert [(h.memory_id, h.changed_at) for h in kv_store.iter_history(namespace)] == [
        (a.id, 1.0),
        (b.id, 2.0),
        (a.id, 3.0),
    ]


def test_iter_memories_orders_by_created_then_id_across_pages(
    kv_store: IKeyValueStore, namespace: str
) -> None:
    batch = [mem(namespace, (float(i), 0.0), created=float(i % 4)) for i in range(11)]
    put(kv_store, *batch)
    expected = [m.id for m in sorted(batch, key=lambda m: (m.created_at, m.id))]
    for page_size in (1, 3, 4, 500):
        assert [m.id for m in kv_store.iter_memories(namespace, page_size=page_size)] == expected
    first = next(iter(kv_store.iter_memories(namespace, page_size=3)))
    assert first == next(m for m in batch if m.id == expected[0])


def test_iter_memories_by_type(kv_store: IKeyValueStore, namespace: str) -> None:
    batch = [
        mem(namespace, (float(i),), kind=SEMANTIC if i % 3 == 0 else EPISODIC, created=i) for i in range(9)
    ]
    put(kv_store, *batch)
    semantic = [m.id for m in kv_store.iter_memories(namespace, SEMANTIC, page_size=2)]
    assert semantic == [batch[0].id, batch[3].id, batch[6].id]
    assert len(list(kv_store.iter_memories(namespace, EPISODIC, page_size=2))) == 6
    assert list(kv_store.iter_memories(namespace + "_empty")) == []


def test_find_range_bounds_are_inclusive(kv_store: IKeyValueStore, namespace: str) -> None:
    points = [(0.0, 0.0), (1.0, 1.0), (1.0, 2.0), (2.0, 2.0), (2.0, 2.5), (-1.0, 1.0), (1.5, 0.5)]
    put(kv_store, *(mem(namespace, p) for p in points))
    found = kv_store.find_range(namespace, (1.0, 0.5), (2.0, 2.0))
    assert coords(found) == [(1.0, 1.0), (1.0, 2.0), (1.5, 0.5), (2.0, 2.0)]
    assert coords(kv_store.find_range(namespace, (2.0, 2.0), (2.0, 2.0))) == [(2.0, 2.0)]
    assert kv_store.find_range(namespace, (3.0, 3.0), (4.0, 4.0)) == []
    assert kv_store.find_range(namespace, (2.0, 2.0), (1.0, 1.0)) == []  # lo above hi: empty box


def test_find_range_is_exact_at_float_precision(kv_store: IKeyValueStore, namespace: str) -> None:
    just_above = 0.1 + 0.2  # 0.30000000000000004
    put(kv_store, *(mem(namespace, (x, 0.0)) for x in (0.1, 0.3, just_above, 1e-9, 123456789.123)))
    assert coords(kv_store.find_range(namespace, (0.1, 0.0), (0.3, 0.0))) == [(0.1, 0.0), (0.3, 0.0)]
    assert coords(kv_store.find_range(namespace, (just_above, 0.0), (1.0, 0.0))) == [(just_above, 0.0)]
    assert coords(kv_store.find_range(namespace, (0.0, 0.0), (1e-9, 0.0))) == [(1e-9, 0.0)]
    big = kv_store.find_range(namespace, (123456789.123, 0.0), (123456789.123, 0.0))
    assert coords(big) == [(123456789.123, 0.0)]
    assert kv_store.find_range(namespace, (123456789.1231, 0.0), (1e9, 0.0)) == []


def test_find_range_handles_huge_coordinates(kv_store: IKeyValueStore, namespace: str) -> None:
    put(kv_store, *(mem(namespace, (x,)) for x in (-1e300, -5e38, 0.0, 5e38, 1e300)))
    assert coords(kv_store.find_range(namespace, (1e39,), (1e301,))) == [(1e300,)]
    assert coords(kv_store.find_range(namespace, (4e38,), (6e38,))) == [(5e38,)]
    assert len(kv_store.find_range(namespace, (-1e308,), (1e308,))) == 5


def test_find_range_only_matches_the_same_number_of_dims(kv_store: IKeyValueStore, namespace: str) -> None:
    put(kv_store, mem(namespace, (1.0,)), mem(namespace, (1.0, 1.0)), mem(namespace, (1.0, 1.0, 1.0)))
    assert coords(kv_store.find_range(namespace, (0.0, 0.0), (2.0, 2.0))) == [(1.0, 1.0)]
    assert coords(kv_store.find_range(namespace, (0.0,), (2.0,))) == [(1.0,)]
    with pytest.raises(InvalidInput):
        kv_store.find_range(namespace, (0.0, 0.0), (2.0,))


def test_find_range_in_many_dims_checks_every_dim(kv_store: IKeyValueStore, namespace: str) -> None:
    base = tuple(float(i) for i in range(16))
    inside, outside = base, (*base[:15], 99.0)
    put(kv_store, mem(namespace, inside), mem(namespace, outside))
    lo = tuple(c - 0.5 for c in base)
    hi = tuple(c + 0.5 for c in base)
    assert coords(kv_store.find_range(namespace, lo, hi)) == [inside]


def test_find_range_filters_by_memory_type_and_orders_by_coordinate(
    kv_store: IKeyValueStore, namespace: str
) -> None:
    put(
        kv_store,
        mem(namespace, (3.0, 1.0), kind=SEMANTIC),
        mem(namespace, (1.0, 5.0)),
        mem(namespace, (1.0, 2.0), kind=SEMANTIC),
        mem(namespace, (2.0, 9.0)),
    )
    box = ((0.0, 0.0), (10.0, 10.0))
    assert coords(kv_store.find_range(namespace, *box)) == [(1.0, 2.0), (1.0, 5.0), (2.0, 9.0), (3.0, 1.0)]
    assert coords(kv_store.find_range(namespace, *box, memory_type=SEMANTIC)) == [(1.0, 2.0), (3.0, 1.0)]
    assert coords(kv_store.find_range(namespace, *box, memory_type=EPISODIC)) == [(1.0, 5.0), (2.0, 9.0)]


def test_find_range_forgets_deleted_memories(kv_store: IKeyValueStore, namespace: str) -> None:
    a, b = mem(namespace, (1.0,)), mem(namespace, (2.0,))
    put(kv_store, a, b)
    kv_store.delete_many(namespace, [a.id], [])
    assert coords(kv_store.find_range(namespace, (0.0,), (5.0,))) == [(2.0,)]
    put(kv_store, mem(namespace, (1.0,), {"text": "back"}))
    assert coords(kv_store.find_range(namespace, (0.0,), (5.0,))) == [(1.0,), (2.0,)]


FILTER_PAYLOADS: dict[str, dict[str, Any]] = {
    "a": {"kind": "note", "n": 1, "tags": ["x", "y"], "meta": {"source": "chat", "depth": 2}, "flag": True},
    "b": {"kind": "task", "n": 5, "tags": ["y"], "meta": {"source": "mail"}, "flag": False},
    "c": {"kind": "note", "n": 10.5, "tags": [], "meta": "flat", "flag": 1},
    "d": {"kind": "Note", "n": "7", "other": None},
    "e": {
        "kind": ["note", "task"],
        "n": True,
        "meta": {"source": {"deep": 1}},
        "flags": [True],
        "other": [None],
    },
}

FILTER_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"kind": "note"}, {"a", "c", "e"}),  # equality; a list field matches if it contains the value
    ({"tags": "y"}, {"a", "b"}),  # list contains
    ({"kind": ["task", "other"]}, {"b", "e"}),  # any of
    ({"tags": ["x", "z"]}, {"a"}),  # list field: any overlap
    ({"kind": []}, set()),  # an empty any-of matches nothing
    ({"n": {"gte": 1, "lt": 10}}, {"a", "b"}),  # numeric range: strings and booleans never match
    ({"n": {"gt": 5}}, {"c"}),
    ({"n": {"lte": 5}}, {"a", "b"}),
    ({"n": {"in": [5, 10.5]}}, {"b", "c"}),
    ({"n": {"ne": 5}}, {"a", "c", "d", "e"}),  # ne needs the key to exist
    ({"n": 1}, {"a"}),  # True is not 1
    ({"n": "7"}, {"d"}),  # "7" is not 7
    ({"flag": True}, {"a"}),  # 1 is not True
    ({"flag": 1}, {"c"}),
    ({"other": None}, {"d", "e"}),  # null, or a list holding null
    ({"flags": True}, {"e"}),  # a list holding true
    ({"flags": False}, set()),
    ({"meta.source": "chat"}, {"a"}),  # dotted keys
    ({"meta.depth": {"gte": 2}}, {"a"}),
    ({"meta.source.deep": 1}, {"e"}),
    ({"kind": "note", "tags": "x"}, {"a"}),  # every filter must hold
    ({"missing": "x"}, set()),
    ({"kind": "NOTE"}, set()),  # case-sensitive
    ({}, {"a", "b", "c", "d", "e"}),
]


@pytest.mark.parametrize(("filters", "expected"), FILTER_CASES, ids=[str(f) for f, _ in FILTER_CASES])
def test_filter_ids_has_the_semantics_of_matches_filters(
    kv_store: IKeyValueStore, namespace: str, filters: dict[str, Any], expected: set[str]
) -> None:
    stored = {name: mem(namespace, (float(i),), p) for i, (name, p) in enumerate(FILTER_PAYLOADS.items())}
    put(kv_store, *stored.values())
    put(kv_store, mem(namespace + "_other", (0.0,), FILTER_PAYLOADS["a"]))  # never returned
    name_of = {m.id: name for name, m in stored.items()}
    assert {name_of[i] for i in kv_store.filter_ids(namespace, filters)} == expected


def test_filter_ids_by_memory_type(kv_store: IKeyValueStore, namespace: str) -> None:
    a = mem(namespace, (1.0,), {"k": 1})
    b = mem(namespace, (2.0,), {"k": 1}, SEMANTIC)
    c = mem(namespace, (3.0,), {"k": 2}, SEMANTIC)
    put(kv_store, a, b, c)
    assert kv_store.filter_ids(namespace, None) == {a.id, b.id, c.id}
    assert kv_store.filter_ids(namespace, None, SEMANTIC) == {b.id, c.id}
    assert kv_store.filter_ids(namespace, {"k": 1}, SEMANTIC) == {b.id}
    assert kv_store.filter_ids(namespace, {"k": 1}, EPISODIC) == {a.id}
    assert kv_store.filter_ids(namespace + "_none", {"k": 1}) == set()


def test_filter_ids_with_fractional_numbers(kv_store: IKeyValueStore, namespace: str) -> None:
    a = mem(namespace, (1.0,), {"score": 0.1 + 0.2})
    b = mem(namespace, (2.0,), {"score": 0.3})
    put(kv_store, a, b)
    assert kv_store.filter_ids(namespace, {"score": 0.3}) == {b.id}
    assert kv_store.filter_ids(namespace, {"score": {"gt": 0.3}}) == {a.id}
    assert kv_store.filter_ids(namespace, {"score": {"lte": 0.3}}) == {b.id}
    assert kv_store.filter_ids(namespace, {"score": {"gte": 0.1 + 0.2}}) == {a.id}


def test_recent_is_newest_first_with_ties_by_id(kv_store: IKeyValueStore, namespace: str) -> None:
    batch = [mem(namespace, (float(i),), updated=float(u)) for i, u in enumerate([5, 9, 1, 9, 7, 3])]
    batch.append(mem(namespace, (99.0,), kind=SEMANTIC, updated=8.0))
    put(kv_store, *batch)
    tied = sorted([batch[1].id, batch[3].id])
    assert [m.id for m in kv_store.recent(namespace, 3)] == [*tied, batch[6].id]
    assert [m.id for m in kv_store.recent(namespace, 1)] == tied[:1]  # the cut falls inside a tie
    assert [m.updated_at for m in kv_store.recent(namespace, 100)] == [9, 9, 8, 7, 5, 3, 1]
    assert [m.updated_at for m in kv_store.recent(namespace, 2, EPISODIC)] == [9, 9]
    assert [m.id for m in kv_store.recent(namespace, 5, SEMANTIC)] == [batch[6].id]
    assert kv_store.recent(namespace, 0) == []
    assert kv_store.recent(namespace + "_none", 3) == []


def test_important_is_highest_first_with_ties_newest_first(kv_store: IKeyValueStore, namespace: str) -> None:
    spec = [(5, 1.0), (1, 9.0), (5, 3.0), (0.5, 4.0), (5, 3.0), (2, 2.0)]
    batch = [mem(namespace, (float(i),), {"importance": imp}, updated=u) for i, (imp, u) in enumerate(spec)]
    batch.append(mem(namespace, (9.0,), {"text": "default importance is 1"}, SEMANTIC, updated=50.0))
    put(kv_store, *batch)
    top = kv_store.important(namespace, 4)
    tied = sorted([batch[2].id, batch[4].id])
    assert [m.id for m in top] == [*tied, batch[0].id, batch[5].id]
    assert [m.id for m in kv_store.important(namespace, 1)] == tied[:1]
    ranked = kv_store.important(namespace, 100)
    assert [m.importance for m in ranked] == [5, 5, 5, 2, 1, 1, 0.5]
    assert [m.updated_at for m in ranked[4:6]] == [50.0, 9.0]
    assert [m.id for m in kv_store.important(namespace, 1, SEMANTIC)] == [batch[6].id]
    assert kv_store.important(namespace, 0) == []


def test_recent_and_important_follow_updates_and_deletes(kv_store: IKeyValueStore, namespace: str) -> None:
    a = mem(namespace, (1.0,), {"importance": 1}, updated=1.0)
    b = mem(namespace, (2.0,), {"importance": 2}, updated=2.0)
    put(kv_store, a, b)
    put(kv_store, mem(namespace, (1.0,), {"importance": 9}, updated=3.0, version=2))
    assert [m.id for m in kv_store.recent(namespace, 1)] == [a.id]
    assert [m.id for m in kv_store.important(namespace, 1)] == [a.id]
    kv_store.delete_many(namespace, [a.id], [])
    assert [m.id for m in kv_store.recent(namespace, 5)] == [b.id]
    assert [m.id for m in kv_store.important(namespace, 5)] == [b.id]


def test_counts_and_namespaces(kv_store: IKeyValueStore, namespace: str) -> None:
    assert kv_store.counts(namespace) == {"total": 0, "episodic": 0, "semantic": 0}
    put(kv_store, mem(namespace, (1.0,)), mem(namespace, (2.0,)), mem(namespace, (3.0,), kind=SEMANTIC))
    assert kv_store.counts(namespace) == {"total": 3, "episodic": 2, "semantic": 1}
    assert namespace in kv_store.namespaces()
    emptied = namespace + "_emptied"
    gone = mem(emptied, (1.0,))
    put(kv_store, gone)
    assert emptied in kv_store.namespaces()
    kv_store.delete_many(emptied, [gone.id], [record(gone, "deleted", 2000.0)])
    assert emptied not in kv_store.namespaces()
    assert kv_store.counts(emptied)["total"] == 0


def test_empty_batches_are_no_ops(kv_store: IKeyValueStore, namespace: str) -> None:
    kv_store.put_many([], [])
    assert kv_store.delete_many(namespace, [], []) == []
    assert kv_store.counts(namespace)["total"] == 0


def test_close_may_be_called_twice(kv_store: IKeyValueStore) -> None:
    kv_store.close()
    kv_store.close()


# -- the change feed -------------------------------------------------------------------


def settled(kv: IKeyValueStore, start: int, count: int) -> int:
    """``change_seq()`` once ``count`` changes after ``start`` are visible.
    PostgreSQL shows a write only after every older writing transaction in
    the cluster has ended (another session may hold one open for a moment)."""
    deadline = time.monotonic() + 30
    while len(kv.changes_since(start, 10_000)[1]) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return kv.change_seq()


def feed(kv: IKeyValueStore, seq: int, limit: int = 1000) -> tuple[int, list[tuple[str, str, int, str]]]:
    cursor, changes = kv.changes_since(seq, limit)
    return cursor, [(c.namespace, c.memory_id, c.version, c.action) for c in changes]


def test_change_feed_reports_every_write_in_commit_order(kv_store: IKeyValueStore, namespace: str) -> None:
    start = kv_store.change_seq()
    a, b = mem(namespace, (1.0,)), mem(namespace, (2.0,))
    put(kv_store, a)
    put(kv_store, b)
    put(kv_store, mem(namespace, (1.0,), {"text": "a2"}, version=2))
    assert kv_store.delete_many(namespace, [b.id, "absent"], [record(b, "deleted", 2000.0)]) == [b.id]
    head = settled(kv_store, start, 4)
    cursor, changes = feed(kv_store, start)
    assert changes == [
        (namespace, a.id, 1, "created"),
        (namespace, b.id, 1, "created"),
        (namespace, a.id, 2, "updated"),
        (namespace, b.id, 1, "deleted"),
    ]
    assert cursor == head > start
    assert feed(kv_store, cursor) == (cursor, [])


def test_change_seq_moves_only_with_writes(kv_store: IKeyValueStore, namespace: str) -> None:
    before = kv_store.change_seq()
    kv_store.get_many(namespace, ["x"])
    kv_store.delete_many(namespace, ["absent"], [])
    list(kv_store.iter_memories(namespace))
    assert kv_store.change_seq() == before
    put(kv_store, mem(namespace, (1.0,)))
    middle = settled(kv_store, before, 1)
    assert middle > before
    put(kv_store, mem(namespace, (2.0,)))
    assert settled(kv_store, before, 2) > middle


def test_changes_since_pages_without_losing_or_repeating(kv_store: IKeyValueStore, namespace: str) -> None:
    start = kv_store.change_seq()
    written = [mem(namespace, (float(i),)) for i in range(7)]
    for m in written:
        put(kv_store, m)
    head = settled(kv_store, start, 7)
    seen: list[str] = []
    cursor = start
    for _ in range(20):
        cursor, changes = feed(kv_store, cursor, limit=3)
        if not changes:
            break
        assert len(changes) <= 3
        seen += [mid for _, mid, _, _ in changes]
    assert seen == [m.id for m in written]
    assert cursor == head


def test_change_feed_records_writes_without_history(kv_store: IKeyValueStore, namespace: str) -> None:
    start = kv_store.change_seq()
    m = mem(namespace, (5.0,), version=4)
    kv_store.put_many([m], [])  # an import may bring memories without history entries
    settled(kv_store, start, 1)
    assert feed(kv_store, start)[1] == [(namespace, m.id, 4, "created")]


def test_change_feed_id_is_stable(kv_store: IKeyValueStore) -> None:
    first = kv_store.change_feed_id()
    assert isinstance(first, str) and first
    assert kv_store.change_feed_id() == first


def test_pruning_keeps_the_newest_changes_and_raises_the_floor(
    kv_store: IKeyValueStore, namespace: str
) -> None:
    start = kv_store.change_seq()
    written = [mem(namespace, (float(i),)) for i in range(6)]
    for m in written:  # six writes, six transactions
        put(kv_store, m)
    head = settled(kv_store, start, 6)
    assert kv_store.change_floor() <= start
    assert kv_store.prune_changes(2) >= 4  # and whatever older changes the store held
    floor = kv_store.change_floor()
    assert start < floor < head
    assert feed(kv_store, floor) == (head, [(namespace, m.id, 1, "created") for m in written[-2:]])
    assert kv_store.prune_changes(2) == 0 and kv_store.change_floor() == floor
    assert kv_store.change_seq() == head  # pruning never moves the cursor ...
    assert kv_store.prune_changes(0) == 1 and kv_store.change_seq() == head  # ... the newest change stays
    put(kv_store, mem(namespace, (9.0,)))
    newer = settled(kv_store, head, 1)
    assert newer > head  # ... and the cursor goes on growing from there
    assert feed(kv_store, head)[1] == [(namespace, memory_id(namespace, (9.0,)), 1, "created")]
