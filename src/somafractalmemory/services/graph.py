"""Links between memories: add, neighbours, weighted shortest path, walks."""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Any

from ..errors import InvalidInput, NotFound
from ..models import Coordinate, Link, Memory, canonical_coordinate, format_coordinate, memory_id, now
from .backends import Backends
from .events import EventEmitter

__all__ = ["DIRECTIONS", "GraphService"]

DIRECTIONS = ("out", "in", "both")
MAX_LINK_TYPE = 64


def _link_type(value: Any, field_name: str = "link_type") -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_LINK_TYPE:
        raise InvalidInput(field_name, f"must be a non-empty string of at most {MAX_LINK_TYPE} characters")
    return value.strip()


class GraphService:
    """The graph of one namespace; edges are stored by ``IGraphStore``."""

    def __init__(self, namespace: str, backends: Backends, events: EventEmitter) -> None:
        self.namespace = namespace
        self.b = backends
        self.events = events

    def _require(self, coord: Coordinate, field_name: str) -> Memory:
        mid = memory_id(self.namespace, coord)
        found = self.b.kv.get_many(self.namespace, [mid]).get(mid)
        if found is None:
            raise NotFound(f"{field_name}: no memory at {format_coordinate(coord)}")
        return found

    def link(
        self,
        frm: Any,
        to: Any,
        link_type: Any = "related",
        weight: Any = 1.0,
        metadata: dict[str, Any] | None = None,
    ) -> Link:
        a = canonical_coordinate(frm, "from_coord")
        b = canonical_coordinate(to, "to_coord")
        kind = _link_type(link_type)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight <= 0
        ):
            raise InvalidInput("weight", "must be a finite number > 0")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInput("metadata", "must be an object")
        self._require(a, "from_coord")
        self._require(b, "to_coord")
        link = Link(
            self.namespace,
            memory_id(self.namespace, a),
            memory_id(self.namespace, b),
            a,
            b,
            kind,
            float(weight),
            dict(metadata or {}),
            now(),
        )
        events = self.events.for_links([link])
        self.b.graph.add_links([link], self.events.outbox(events))
        self.events.published(events)
        return link

    def unlink(self, frm: Any, to: Any, link_type: Any = None) -> int:
        a = canonical_coordinate(frm, "from_coord")
        b = canonical_coordinate(to, "to_coord")
        kind = _link_type(link_type) if link_type is not None else None
        from_id, to_id = memory_id(self.namespace, a), memory_id(self.namespace, b)
        gone = Link(self.namespace, from_id, to_id, a, b, kind or "*", 1.0, {}, now())
        events = self.events.for_links([gone], created=False)
        removed = self.b.graph.remove_links(self.namespace, from_id, to_id, kind, self.events.outbox(events))
        if removed:
            self.events.published(events)
        return removed

    def neighbors(
        self, coord: Any, link_type: Any = None, limit: Any = None, direction: str = "out"
    ) -> list[Link]:
        c = canonical_coordinate(coord)
        if direction not in DIRECTIONS:
            raise InvalidInput("direction", "must be 'out', 'in' or 'both'")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InvalidInput("limit", "must be a positive integer")
        kind = _link_type(link_type) if link_type is not None else None
        return self.b.graph.neighbors(self.namespace, memory_id(self.namespace, c), kind, direction, limit)

    def shortest_path(self, frm: Any, to: Any, link_type: Any = None, max_depth: int = 8) -> list[Coordinate]:
        """Dijkstra over out-edges (cost = weight), at most ``max_depth`` edges; [] if none."""
        a = canonical_coordinate(frm, "frm")
        b = canonical_coordinate(to, "to")
        kind = _link_type(link_type) if link_type is not None else None
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or not 1 <= max_depth <= 64:
            raise InvalidInput("max_depth", "must be an integer from 1 to 64")
        start, goal = memory_id(self.namespace, a), memory_id(self.namespace, b)
        if start == goal:
            return [a] if self.b.kv.get_many(self.namespace, [start]) else []
        coords = {start: a}
        best: dict[tuple[str, int], float] = {(start, 0): 0.0}
        parent: dict[tuple[str, int], tuple[str, int]] = {}
        heap: list[tuple[float, int, str]] = [(0.0, 0, start)]
        while heap:
            cost, depth, node = heapq.heappop(heap)
            if node == goal:
                path, key = [], (node, depth)
                while True:
                    path.append(coords[key[0]])
                    if key not in parent:
                        break
                    key = parent[key]
                return path[::-1]
            if depth >= max_depth or cost > best.get((node, depth), math.inf):
                continue
            for edge in self.b.graph.neighbors(self.namespace, node, kind, "out", None):
                nxt = (edge.to_id, depth + 1)
                total = cost + edge.weight
                if total < best.get(nxt, math.inf) and not any(
                    best.get((edge.to_id, d), math.inf) <= total for d in range(depth + 1)
                ):
                    best[nxt] = total
                    parent[nxt] = (node, depth)
                    coords[edge.to_id] = edge.to_coord
                    heapq.heappush(heap, (total, depth + 1, edge.to_id))
        return []

    def hops_from(self, start: str, max_hops: int = 2, link_type: str | None = None) -> dict[str, int]:
        """Ids reachable from ``start`` (either direction) within ``max_hops``, with their hop count."""
        seen = {start: 0}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if seen[node] >= max_hops:
                continue
            for edge in self.b.graph.neighbors(self.namespace, node, link_type, "both", None):
                other = edge.to_id if edge.from_id == node else edge.from_id
                if other not in seen:
                    seen[other] = seen[node] + 1
                    queue.append(other)
        seen.pop(start)
        return seen

    def linked_memories(self, coord: Any, link_type: Any = None, depth: Any = 1) -> list[Memory]:
        c = canonical_coordinate(coord)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 16:
            raise InvalidInput("depth", "must be an integer from 1 to 16")
        kind = _link_type(link_type) if link_type is not None else None
        start = memory_id(self.namespace, c)
        seen = {start: 0}
        order: list[str] = []
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if seen[node] >= depth:
                continue
            for edge in self.b.graph.neighbors(self.namespace, node, kind, "out", None):
                if edge.to_id not in seen:
                    seen[edge.to_id] = seen[node] + 1
                    order.append(edge.to_id)
                    queue.append(edge.to_id)
        found = self.b.kv.get_many(self.namespace, order)
        return [found[i] for i in order if i in found]
