"""Contract of ``IGraphStore``: persisted directed, typed, weighted edges."""

from __future__ import annotations

from typing import Any

import pytest

from somafractalmemory.errors import InvalidInput
from somafractalmemory.interfaces.storage import IGraphStore
from somafractalmemory.models import Link, memory_id


def node(ns: str, x: float) -> tuple[str, tuple[float, ...]]:
    coord = (x, 0.0)
    return memory_id(ns, coord), coord


def link(
    ns: str,
    a: float,
    b: float,
    link_type: str = "related",
    weight: float = 1.0,
    created: float = 0.0,
    metadata: dict[str, Any] | None = None,
) -> Link:
    (fa, ca), (fb, cb) = node(ns, a), node(ns, b)
    return Link(ns, fa, fb, ca, cb, link_type, weight, metadata or {}, created)


def ends(links: list[Link]) -> list[tuple[float, float, str]]:
    return [(e.from_coord[0], e.to_coord[0], e.link_type) for e in links]


def test_adapter_implements_the_port(graph_store: IGraphStore) -> None:
    assert isinstance(graph_store, IGraphStore)
    assert graph_store.name
    graph_store.health()


def test_added_links_come_back_with_their_data(graph_store: IGraphStore, namespace: str) -> None:
    original = link(namespace, 1, 2, "caused", 0.5, 10.0, {"why": "because", "n": [1, 2]})
    graph_store.add_links([original])
    [got] = graph_store.neighbors(namespace, node(namespace, 1)[0])
    assert got == original
    assert graph_store.count(namespace) == 1


def test_adding_again_replaces_weight_and_metadata(graph_store: IGraphStore, namespace: str) -> None:
    graph_store.add_links([link(namespace, 1, 2, weight=1.0, created=5.0, metadata={"v": 1})])
    graph_store.add_links([link(namespace, 1, 2, weight=3.0, created=9.0, metadata={"v": 2})])
    [got] = graph_store.neighbors(namespace, node(namespace, 1)[0])
    assert (got.weight, got.metadata) == (3.0, {"v": 2})
    assert got.created_at == 5.0  # the edge keeps its creation time
    assert graph_store.count(namespace) == 1


def test_same_pair_with_other_types_are_separate_edges(graph_store: IGraphStore, namespace: str) -> None:
    graph_store.add_links([link(namespace, 1, 2, "related"), link(namespace, 1, 2, "cites", weight=2.0)])
    assert graph_store.count(namespace) == 2
    assert ends(graph_store.neighbors(namespace, node(namespace, 1)[0])) == [
        (1, 2, "related"),
        (1, 2, "cites"),
    ]


def test_neighbors_directions(graph_store: IGraphStore, namespace: str) -> None:
    graph_store.add_links(
        [link(namespace, 1, 2, weight=1), link(namespace, 3, 1, weight=2), link(namespace, 2, 3)]
    )
    one = node(namespace, 1)[0]
    assert ends(graph_store.neighbors(namespace, one)) == [(1, 2, "related")]
    assert ends(graph_store.neighbors(namespace, one, direction="out")) == [(1, 2, "related")]
    assert ends(graph_store.neighbors(namespace, one, direction="in")) == [(3, 1, "related")]
    assert ends(graph_store.neighbors(namespace, one, direction="both")) == [
        (1, 2, "related"),
        (3, 1, "related"),
    ]
    assert graph_store.neighbors(namespace, "unknown", direction="both") == []
    with pytest.raises(InvalidInput):
        graph_store.neighbors(namespace, one, direction="sideways")


def test_self_loop_is_listed_once(graph_store: IGraphStore, namespace: str) -> None:
    graph_store.add_links([link(namespace, 1, 1)])
    assert len(graph_store.neighbors(namespace, node(namespace, 1)[0], direction="both")) == 1


def test_neighbors_filter_by_type_and_order_by_weight_then_creation(
    graph_store: IGraphStore, namespace: str
) -> None:
    graph_store.add_links(
        [
            link(namespace, 0, 1, "a", weight=2.0, created=1.0),
            link(namespace, 0, 2, "b", weight=0.5, created=2.0),
            link(namespace, 0, 3, "a", weight=2.0, created=0.5),
            link(namespace, 0, 4, "a", weight=1.0, created=9.0),
        ]
    )
    zero = node(namespace, 0)[0]
    assert [e.to_coord[0] for e in graph_store.neighbors(namespace, zero)] == [2, 4, 3, 1]
    assert [e.to_coord[0] for e in graph_store.neighbors(namespace, zero, "a")] == [4, 3, 1]
    assert graph_store.neighbors(namespace, zero, "missing") == []


def test_neighbors_limit(graph_store: IGraphStore, namespace: str) -> None:
    graph_store.add_links([link(namespace, 0, float(i), weight=float(10 - i)) for i in range(1, 8)])
    zero = node(namespace, 0)[0]
    assert [e.to_coord[0] for e in graph_store.neighbors(namespace, zero, limit=3)] == [7, 6, 5]
    assert len(graph_store.neighbors(namespace, zero, limit=100)) == 7
    assert graph_store.neighbors(namespace, zero, limit=0) == []


def test_remove_links(graph_store: IGraphStore, namespace: str) -> None:
    graph_store.add_links(
        [
            link(namespace, 1, 2, "a"),
            link(namespace, 1, 2, "b"),
            link(namespace, 1, 2, "c"),
            link(namespace, 2, 1),
        ]
    )
    one, two = node(namespace, 1)[0], node(namespace, 2)[0]
    assert graph_store.remove_links(namespace, one, two, "a") == 1
    assert graph_store.remove_links(namespace, one, two, "a") == 0
    assert graph_store.remove_links(namespace, one, two) == 2
    assert ends(list(graph_store.iter_links(namespace))) == [(2, 1, "related")]
    assert graph_store.remove_links(namespace, "x", "y") == 0


def test_remove_nodes_removes_every_touching_edge(graph_store: IGraphStore, namespace: str) -> None:
    graph_store.add_links(
        [link(namespace, 1, 2), link(namespace, 3, 1), link(namespace, 2, 3), link(namespace, 1, 4, "t")]
    )
    graph_store.add_links([link(namespace, 3, 4), link(namespace, 1, 1)])
    one, two = node(namespace, 1)[0], node(namespace, 2)[0]
    assert graph_store.remove_nodes(namespace, [one, two, "unknown"]) == 5
    assert ends(list(graph_store.iter_links(namespace))) == [(3, 4, "related")]
    assert graph_store.neighbors(namespace, one, direction="both") == []
    assert graph_store.remove_nodes(namespace, [one]) == 0


def test_count_iter_links_and_namespace_isolation(graph_store: IGraphStore, namespace: str) -> None:
    other = namespace + "_other"
    mine = [link(namespace, float(i), float(i + 1), weight=float(i % 3 + 1)) for i in range(25)]
    graph_store.add_links(mine)
    graph_store.add_links([link(other, 1, 2)])
    assert graph_store.count(namespace) == 25
    assert graph_store.count(other) == 1
    assert graph_store.count(namespace + "_none") == 0
    listed = list(graph_store.iter_links(namespace))
    assert sorted(ends(listed)) == sorted(ends(mine))
    assert all(e.namespace == namespace for e in listed)
    assert graph_store.neighbors(other, node(namespace, 0)[0]) == []
    assert graph_store.remove_nodes(other, [node(namespace, 0)[0]]) == 0
    assert graph_store.count(namespace) == 25
    assert list(graph_store.iter_links(namespace + "_none")) == []


def test_returned_links_are_not_aliases(graph_store: IGraphStore, namespace: str) -> None:
    original = link(namespace, 1, 2, metadata={"k": [1]})
    graph_store.add_links([original])
    original.metadata["k"].append(2)
    got = graph_store.neighbors(namespace, node(namespace, 1)[0])[0]
    got.metadata["k"].append(3)
    assert graph_store.neighbors(namespace, node(namespace, 1)[0])[0].metadata == {"k": [1]}


def test_close_may_be_called_twice(graph_store: IGraphStore) -> None:
    graph_store.close()
    graph_store.close()
