"""In-process link store (``IGraphStore``): adjacency dicts per namespace.

Every edge is kept once, keyed by ``(from_id, to_id, link_type)``, and
indexed from both ends. Replacing an edge keeps its creation order and
``created_at`` and updates weight, metadata and coordinates. ``neighbors``
orders by weight ascending (a weight is a path cost, so the closest come
first), then ``created_at``, then insertion order.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence

from ...errors import InvalidInput
from ...models import Link, MemoryEvent
from ._util import clone_link

__all__ = ["InMemoryGraphStore"]

_Key = tuple[str, str, str]  # (from_id, to_id, link_type)


class _Graph:
    def __init__(self) -> None:
        self.edges: dict[_Key, tuple[int, Link]] = {}  # key -> (insertion seq, link)
        self.out: dict[str, set[_Key]] = {}
        self.inc: dict[str, set[_Key]] = {}

    def add(self, seq: int, link: Link) -> None:
        key = (link.from_id, link.to_id, link.link_type)
        current = self.edges.get(key)
        if current is not None:
            old_seq, old = current
            link.created_at = old.created_at
            self.edges[key] = (old_seq, link)
            return
        self.edges[key] = (seq, link)
        self.out.setdefault(link.from_id, set()).add(key)
        self.inc.setdefault(link.to_id, set()).add(key)

    def remove(self, key: _Key) -> None:
        del self.edges[key]
        for index, node in ((self.out, key[0]), (self.inc, key[1])):
            keys = index.get(node)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[node]


class InMemoryGraphStore:
    """``IGraphStore`` kept in process memory (lost when the process ends)."""

    name = "memory"

    def __init__(self) -> None:
        self._graphs: dict[str, _Graph] = {}
        self._seq = itertools.count()
        self._lock = threading.RLock()

    def add_links(self, links: Sequence[Link], events: Sequence[MemoryEvent] = ()) -> None:
        copies = [clone_link(link) for link in links]
        for link in copies:
            if not link.link_type:
                raise InvalidInput("link_type", "must be a non-empty string")
        with self._lock:
            for link in copies:
                self._graphs.setdefault(link.namespace, _Graph()).add(next(self._seq), link)

    def remove_links(
        self,
        namespace: str,
        from_id: str,
        to_id: str,
        link_type: str | None = None,
        events: Sequence[MemoryEvent] = (),
    ) -> int:
        with self._lock:
            graph = self._graphs.get(namespace)
            if graph is None:
                return 0
            keys = [k for k in graph.out.get(from_id, ()) if k[1] == to_id and link_type in (None, k[2])]
            for key in keys:
                graph.remove(key)
            return len(keys)

    def remove_nodes(self, namespace: str, ids: Sequence[str]) -> int:
        with self._lock:
            graph = self._graphs.get(namespace)
            if graph is None:
                return 0
            keys: set[_Key] = set()
            for node in ids:
                keys.update(graph.out.get(node, ()))
                keys.update(graph.inc.get(node, ()))
            for key in keys:
                graph.remove(key)
            return len(keys)

    def neighbors(
        self,
        namespace: str,
        memory_id: str,
        link_type: str | None = None,
        direction: str = "out",
        limit: int | None = None,
    ) -> list[Link]:
        if direction not in ("out", "in", "both"):
            raise InvalidInput("direction", f"must be 'out', 'in' or 'both', got {direction!r}")
        with self._lock:
            graph = self._graphs.get(namespace)
            if graph is None or (limit is not None and limit <= 0):
                return []
            keys: set[_Key] = set()
            if direction in ("out", "both"):
                keys.update(graph.out.get(memory_id, ()))
            if direction in ("in", "both"):
                keys.update(graph.inc.get(memory_id, ()))
            found = [graph.edges[k] for k in keys if link_type is None or k[2] == link_type]
        found.sort(key=lambda item: (item[1].weight, item[1].created_at, item[0]))
        if limit is not None:
            found = found[:limit]
        return [clone_link(link) for _, link in found]

    def iter_links(self, namespace: str) -> Iterator[Link]:
        """Every edge, in insertion order."""
        with self._lock:
            graph = self._graphs.get(namespace)
            edges = sorted(graph.edges.values(), key=lambda item: item[0]) if graph else []
        for _, link in edges:
            yield clone_link(link)

    def count(self, namespace: str) -> int:
        with self._lock:
            graph = self._graphs.get(namespace)
            return len(graph.edges) if graph else 0

    def health(self) -> None:
        return None

    def close(self) -> None:
        return None
