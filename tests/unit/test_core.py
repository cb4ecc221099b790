"""The facade's behaviour on the in-process (TEST) wiring."""

from __future__ import annotations

import io
import json
import time

import pytest

from somafractalmemory import (
    InvalidInput,
    MemoryType,
    NotFound,
    SomaFractalMemoryEnterprise,
    create_memory_system,
    memory_id,
)
from somafractalmemory.models import canonical_coordinate


@pytest.fixture
def mem() -> SomaFractalMemoryEnterprise:
    return create_memory_system("test", "core")


def test_store_then_retrieve_and_update_keeps_history(mem: SomaFractalMemoryEnterprise) -> None:
    first = mem.store_memory((1, 2, 3), {"text": "first"})
    assert first.version == 1 and "timestamp" in first.payload
    second = mem.store_memory([1.0, 2.0, 3.0], {"text": "second"}, MemoryType.SEMANTIC)
    assert second.id == first.id and second.version == 2
    got = mem.retrieve("1,2,3")
    assert got is not None and got["text"] == "second" and got["memory_type"] == "semantic"
    versions = mem.get_versions((1, 2, 3))
    assert [v.action for v in versions] == ["created", "updated"]
    assert versions[1].changed_keys and "text" in versions[1].changed_keys
    assert mem.memory_stats()["total_memories"] == 1


def test_retrieve_never_writes(mem: SomaFractalMemoryEnterprise) -> None:
    assert mem.retrieve((9, 9)) is None
    assert mem.memory_stats()["total_memories"] == 0
    mem.store_memory((1,), {"text": "x"})
    before = mem.get_versions((1,))
    mem.retrieve((1,))
    assert mem.get_versions((1,)) == before


def test_bad_input_stores_nothing(mem: SomaFractalMemoryEnterprise) -> None:
    items = [((1, 1), {"text": "ok"}, "episodic"), ((2, float("nan")), {"text": "bad"}, "episodic")]
    with pytest.raises(InvalidInput) as err:
        mem.store_memories_bulk(items)
    assert err.value.field == "items[1].coordinate"
    with pytest.raises(InvalidInput):
        mem.store_memory((1, 2), ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        mem.store_memory((1, 2), {"text": "x"}, "dream")
    assert mem.memory_stats()["total_memories"] == 0
    assert mem.memory_stats()["vectors"] == 0


def test_remember_picks_free_coordinates(mem: SomaFractalMemoryEnterprise) -> None:
    a = mem.remember({"text": "same"})
    b = mem.remember({"text": "same"})
    assert a.coordinate != b.coordinate
    assert len(a.coordinate) == 3
    c = mem.remember({"text": "given"}, coordinate=(5, 5))
    assert c.coordinate == (5.0, 5.0)


def test_bulk_dict_items_and_recall(mem: SomaFractalMemoryEnterprise) -> None:
    mem.store_memories_bulk(
        [
            {
                "coordinate": (i, 0),
                "payload": {"text": f"note number {i} about {topic}"},
                "memory_type": "semantic",
            }
            for i, topic in enumerate(["cats", "dogs", "stock markets", "cooking pasta"])
        ]
    )
    hits = mem.recall_with_scores("pasta cooking", top_k=2)
    assert hits[0].memory.payload["text"].endswith("cooking pasta")
    assert 0 < hits[0].score <= 1
    assert set(hits[0].parts.to_dict()) == {"vector", "keyword", "importance", "recency", "graph"}
    assert mem.recall("pasta cooking", top_k=1)[0]["coordinate"] == [3.0, 0.0]


def test_filters_apply_before_top_k(mem: SomaFractalMemoryEnterprise) -> None:
    items = [((i,), {"text": "apple pie recipe", "kind": "a"}, "episodic") for i in range(20)]
    items.append(((100,), {"text": "banana", "kind": "b"}, "episodic"))
    mem.store_memories_bulk(items)
    hits = mem.recall("apple pie recipe", top_k=3, filters={"kind": "b"})
    assert [h["coordinate"] for h in hits] == [[100.0]]
    assert all(h["memory_type"] == "semantic" for h in mem.recall("apple", memory_type="semantic")) is True
    assert mem.recall("apple", memory_type="semantic") == []


def test_min_score_abstains(mem: SomaFractalMemoryEnterprise) -> None:
    mem.store_memory((1,), {"text": "the quarterly revenue report"})
    assert mem.recall("quarterly revenue", min_score=0.0)
    assert mem.recall("zebra xylophone", min_score=0.9) == []


def test_delete_removes_everywhere(mem: SomaFractalMemoryEnterprise) -> None:
    mem.store_memory((1,), {"text": "secret launch codes"})
    mem.store_memory((2,), {"text": "grocery list"})
    mem.link_memories((1,), (2,))
    assert mem.delete((1,)) is True
    assert mem.retrieve((1,)) is None
    assert all(h["coordinate"] != [1.0] for h in mem.recall("secret launch codes", top_k=5))
    assert mem.keyword_search("secret") == []
    assert mem.get_neighbors((2,), direction="in") == []
    stats = mem.memory_stats()
    assert (stats["total_memories"], stats["vectors"], stats["links"]) == (1, 1, 0)
    assert mem.get_versions((1,))[-1].action == "deleted"
    assert mem.delete((1,)) is False


def test_range_query(mem: SomaFractalMemoryEnterprise) -> None:
    mem.store_memories_bulk(
        [((x, y, 0), {"text": f"{x} {y}"}, "episodic") for x in range(5) for y in range(5)]
    )
    mem.store_memory((1, 1), {"text": "two dims"})
    found = mem.find_by_coordinate_range((1, 1, 0), (2, 3, 0))
    assert sorted(m.coordinate for m in found) == sorted(
        (float(x), float(y), 0.0) for x in (1, 2) for y in (1, 2, 3)
    )
    with pytest.raises(InvalidInput):
        mem.find_by_coordinate_range((1, 1), (0, 0))


def test_graph_neighbors_and_weighted_path(mem: SomaFractalMemoryEnterprise) -> None:
    for i in range(5):
        mem.store_memory((i,), {"text": f"node {i}"})
    mem.link_memories((0,), (1,), weight=1.0)
    mem.link_memories((1,), (4,), weight=1.0)
    mem.link_memories((0,), (2,), weight=0.1)
    mem.link_memories((2,), (3,), weight=0.1)
    mem.link_memories((3,), (4,), weight=0.1, link_type="cites")
    assert mem.find_shortest_path((0,), (4,)) == [(0.0,), (2.0,), (3.0,), (4.0,)]
    assert mem.find_shortest_path((0,), (4,), link_type="related") == [(0.0,), (1.0,), (4.0,)]
    assert mem.find_shortest_path((4,), (0,)) == []
    out = mem.get_neighbors((0,))
    assert {link.to_coord for link in out} == {(1.0,), (2.0,)}
    assert [link.from_coord for link in mem.get_neighbors((4,), direction="in")] != []
    with pytest.raises(NotFound):
        mem.link_memories((0,), (99,))
    walk = [m.coordinate for m in mem.get_linked_memories((0,), depth=2)]
    assert walk[:2] == [(2.0,), (1.0,)]  # neighbours by weight, then the second hop
    assert set(walk[2:]) == {(3.0,), (4.0,)}
    assert [m.coordinate for m in mem.get_linked_memories((0,), depth=1)] == [(2.0,), (1.0,)]


def test_context_graph_signal(mem: SomaFractalMemoryEnterprise) -> None:
    mem.store_memory((0,), {"text": "project kickoff"})
    mem.store_memory((1,), {"text": "meeting notes alpha"})
    mem.store_memory((2,), {"text": "meeting notes beta"})
    mem.link_memories((0,), (2,))
    hits = mem.recall_with_context("meeting notes", {"coordinate": [0]}, top_k=2)
    assert hits[0].memory.coordinate == (2.0,)
    assert hits[0].parts.graph == 1.0


def test_export_import_round_trip(mem: SomaFractalMemoryEnterprise) -> None:
    mem.store_memory((1, 2), {"text": "alpha", "importance": 4})
    mem.store_memory((1, 2), {"text": "alpha v2"})
    mem.store_memory((3, 4), {"fact": "beta"}, "semantic")
    mem.store_memory((5, 6), {"text": "gone"})
    mem.delete((5, 6))
    mem.link_memories((1, 2), (3, 4), "cites", 2.5)
    buffer = io.StringIO()
    mem.export_memories(buffer)
    other = mem.for_namespace("copy")
    counts = other.import_memories(io.StringIO(buffer.getvalue()))
    assert counts == {"memories": 2, "history": 5, "links": 1}
    again = io.StringIO()
    other.export_memories(again)

    def strip(text: str) -> list[dict[str, object]]:
        rows = [json.loads(line) for line in text.splitlines()]
        for row in rows:
            for key in ("namespace", "id", "memory_id", "from_id", "to_id"):
                row.pop(key, None)
        return rows

    assert strip(again.getvalue()) == strip(buffer.getvalue())
    assert other.recall("beta", top_k=1)[0]["fact"] == "beta"


def test_import_rejects_bad_line_and_writes_nothing(mem: SomaFractalMemoryEnterprise) -> None:
    good = json.dumps({"kind": "memory", **mem.store_memory((1,), {"text": "x"}).to_dict()})
    other = mem.for_namespace("bad")
    with pytest.raises(InvalidInput) as err:
        other.import_memories(io.StringIO(good + "\n{not json\n"))
    assert err.value.field.startswith("line 2")
    assert other.memory_stats()["total_memories"] == 0


def test_namespaces_are_isolated(mem: SomaFractalMemoryEnterprise) -> None:
    other = mem.for_namespace("other")
    mem.store_memory((1,), {"text": "private thought"})
    assert other.retrieve((1,)) is None
    assert other.recall("private thought") == []
    assert memory_id("core", canonical_coordinate((1,))) != memory_id("other", canonical_coordinate((1,)))


def test_ttl_expiry_and_decay_policies() -> None:
    mem = create_memory_system("test", "life", config={"memory_enterprise": {"max_memory_size": 2}})
    mem.store_memory((1,), {"text": "short lived", "ttl_seconds": 0.01})
    time.sleep(0.05)
    assert mem.recall("short lived") == []
    mem.store_memory((2,), {"text": "low", "importance": 0})
    mem.store_memory((3,), {"text": "high", "importance": 9})
    mem.store_memory((4,), {"text": "mid", "importance": 3})
    result = mem.run_decay_once()
    assert result["expired"] == 1 and result["pruned"] == 1
    assert mem.retrieve((2,)) is None and mem.retrieve((3,)) is not None


def test_consolidation_links_sources_and_never_overwrites(mem: SomaFractalMemoryEnterprise) -> None:
    for i in range(3):
        mem.store_memory((i,), {"text": f"standup meeting day {i}", "tags": ["standup"]})
    created = mem.consolidate_memories(3600)
    assert len(created) == 1 and created[0].memory_type is MemoryType.SEMANTIC
    assert len(mem.get_neighbors(created[0].coordinate, link_type="consolidated_from")) == 3
    assert all(mem.retrieve((i,)) is not None for i in range(3))
    assert mem.consolidate_memories(3600) == []


def test_hooks_and_locks(mem: SomaFractalMemoryEnterprise) -> None:
    seen: list[str] = []
    mem.set_hook("after_store", lambda memory: seen.append(memory.id))

    def veto(**_: object) -> None:
        raise InvalidInput("payload", "vetoed")

    mem.store_memory((1,), {"text": "a"})
    mem.set_hook("before_store", veto)
    with pytest.raises(InvalidInput):
        mem.store_memory((2,), {"text": "b"})
    assert len(seen) == 1 and mem.retrieve((2,)) is None
    with mem.acquire_lock("job", timeout=1):
        pass


def test_set_importance_and_rankings(mem: SomaFractalMemoryEnterprise) -> None:
    mem.store_memory((1,), {"text": "a"})
    mem.store_memory((2,), {"text": "b"})
    mem.set_importance((1,), 10)
    assert mem.get_important(1)[0].coordinate == (1.0,)
    assert mem.get_recent(1)[0].coordinate == (1.0,)
    with pytest.raises(NotFound):
        mem.set_importance((7,), 1)


def test_health_and_stats(mem: SomaFractalMemoryEnterprise) -> None:
    health = mem.health_check()
    assert all(entry["ok"] for entry in health.values())
    assert mem.memory_stats()["mode"] == "test"
