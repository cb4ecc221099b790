"""``RemoteMemory``: the commands' operations on a server (``soma --url``).

The remote implementation of ``cli.context.MemoryBackend``: each method makes
the call of the same name on ``SomaFractalMemoryEnterprise`` through the HTTP
API (``SomaClient``, one request per endpoint) and returns the library's own
types built from the responses, so ``render`` prints the same output as in
local mode, and the same exceptions reach the exit-code table.

Coordinates, memory types and payloads are checked here with the library's
own rules before anything is sent, so a bad one is reported with the same
field and message as in local mode (the server checks again). The namespace
is the ``X-Soma-Namespace`` header when ``--namespace`` was given; otherwise
the server picks (the key's namespace, else its default), and where a result
must name it, one ``GET /stats`` asks which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import MissingDependency, NotFound
from ..models import (
    Coordinate,
    HistoryEntry,
    Link,
    Memory,
    MemoryType,
    RecallHit,
    ScoreParts,
    canonical_coordinate,
    memory_id,
    validate_payload,
)
from ..services.store import parse_bulk_item

if TYPE_CHECKING:
    from ..api.schemas import HealthResponse, LiveResponse, MemoryOut, ReadyResponse, ScoredMatch
    from ..client import SomaClient

__all__ = ["RANGE_LIMIT", "RemoteMemory"]

#: Most memories one ``GET /range`` returns (the API's own bound).
RANGE_LIMIT = 100_000
_ADDED_KEYS = ("coordinate", "memory_type")  # what a recall or range payload adds to the stored one


def _type(value: Any, field: str = "memory_type") -> str:
    return MemoryType.parse(value, field).value


def _optional_type(value: Any) -> str | None:
    return None if value is None else _type(value)


def _stored_payload(public: Mapping[str, Any]) -> dict[str, Any]:
    """The stored payload of a recall or range result (without the keys the API adds)."""
    return {k: v for k, v in public.items() if k not in _ADDED_KEYS}


class RemoteMemory:
    """The memory system behind a Soma server, with the local system's method signatures."""

    def __init__(
        self, url: str, api_key: str | None = None, namespace: str | None = None, timeout: float = 30.0
    ) -> None:
        try:
            from ..client import SomaClient
        except ImportError as exc:  # httpx, the [client] extra
            raise MissingDependency(exc.name or "httpx", "client") from None
        self.url = url
        self._namespace = namespace
        self.client: SomaClient = SomaClient(url, api_key=api_key, namespace=namespace, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    @property
    def namespace(self) -> str:
        """The namespace the server acts on for this caller."""
        if self._namespace is None:
            self._namespace = self.client.stats().namespace
        return self._namespace

    # -- building the library's types from responses --------------------------------------------
    @staticmethod
    def _memory(out: MemoryOut) -> Memory:
        return Memory(
            id=out.memory_id,
            namespace=out.namespace,
            coordinate=canonical_coordinate(out.coord),
            payload=out.payload,
            memory_type=out.type,
            created_at=out.created_at,
            updated_at=out.updated_at,
            version=out.version,
        )

    def _hit(self, match: ScoredMatch) -> RecallHit:
        """A scored result. The API sends what a hit shows (coordinate, payload, score and its
        parts); the record's id, timestamps and version are not sent and stay empty."""
        coord = canonical_coordinate(match.coord)
        memory = Memory(
            id="",
            namespace=self._namespace or "",
            coordinate=coord,
            payload=_stored_payload(match.payload),
            memory_type=MemoryType.parse(match.payload.get("memory_type")),
            created_at=0.0,
            updated_at=0.0,
            version=0,
        )
        return RecallHit(memory, match.score, ScoreParts(**match.parts.model_dump()))

    # -- writes ---------------------------------------------------------------------------------
    def store_memory(self, coordinate: Any, payload: Any, memory_type: Any = MemoryType.EPISODIC) -> Memory:
        coord = canonical_coordinate(coordinate)
        validate_payload(payload)
        stored = self.client.store(coord, payload, _type(memory_type))
        return self._memory(self.client.get(stored.coord))

    def remember(
        self, payload: Any, coordinate: Any = None, memory_type: Any = MemoryType.EPISODIC
    ) -> Memory:
        coord = None if coordinate is None else canonical_coordinate(coordinate)
        validate_payload(payload)
        stored = self.client.remember(payload, coord, _type(memory_type))
        return self._memory(self.client.get(stored.coord))

    def store_memories_bulk(self, items: Iterable[Any]) -> range:
        """Store a batch; the API answers with the count, returned as a sized ``range``."""
        wire = []
        for i, item in enumerate(items):
            coord, payload, mtype = parse_bulk_item(item, i)
            wire.append(
                (
                    canonical_coordinate(coord, f"items[{i}].coordinate"),
                    validate_payload(payload, f"items[{i}].payload"),
                    _type(mtype, f"items[{i}].memory_type"),
                )
            )
        return range(self.client.store_bulk(wire))

    def delete_many(self, coordinates: Sequence[Any]) -> int:
        coords = dict.fromkeys(
            canonical_coordinate(c, f"coordinates[{i}]") for i, c in enumerate(coordinates)
        )
        return sum(self.client.delete(c) for c in coords)

    def link_memories(
        self,
        from_coord: Any,
        to_coord: Any,
        link_type: Any = "related",
        weight: Any = 1.0,
        metadata: dict[str, Any] | None = None,
    ) -> Link:
        """Add the link, then read it back (``/link`` answers only ``ok``)."""
        a = canonical_coordinate(from_coord, "from_coord")
        b = canonical_coordinate(to_coord, "to_coord")
        self.client.link(a, b, link_type, weight, metadata)
        for found in self.get_neighbors(a, link_type, None, "out"):
            if found.to_coord == b:
                return found
        raise NotFound(f"the link from {from_coord} to {to_coord} was removed meanwhile")

    # -- reads ----------------------------------------------------------------------------------
    def get_memory(self, coordinate: Any) -> Memory | None:
        try:
            return self._memory(self.client.get(canonical_coordinate(coordinate)))
        except NotFound:
            return None

    def get_versions(self, coordinate: Any) -> list[HistoryEntry]:
        coord = canonical_coordinate(coordinate)
        try:
            versions = self.client.history(coord)
        except NotFound:
            return []
        namespace = self.namespace
        mid = memory_id(namespace, coord)
        return [
            HistoryEntry(
                namespace=namespace,
                memory_id=mid,
                coordinate=coord,
                version=v.version,
                action=v.action,
                payload=v.payload,
                memory_type=v.type,
                changed_at=v.changed_at,
                actor=v.actor,
                changed_keys=v.changed_keys,
            )
            for v in versions
        ]

    def find_by_coordinate_range(
        self, min_coord: Any, max_coord: Any, memory_type: Any = None
    ) -> list[Memory]:
        lo = canonical_coordinate(min_coord, "min")
        hi = canonical_coordinate(max_coord, "max")
        items = self.client.range(lo, hi, _optional_type(memory_type), limit=RANGE_LIMIT)
        if not items:
            return []
        namespace = self.namespace
        return [
            Memory(
                id=item.memory_id,
                namespace=namespace,
                coordinate=canonical_coordinate(item.coord),
                payload=_stored_payload(item.payload),
                memory_type=item.type,
                created_at=item.created_at,
                updated_at=item.updated_at,
                version=item.version,
            )
            for item in items
        ]

    def recall(
        self,
        query: Any,
        top_k: Any = 5,
        memory_type: Any = None,
        filters: Any = None,
        context: Mapping[str, Any] | None = None,
        min_score: Any = None,
    ) -> list[dict[str, Any]]:
        return self.client.recall(query, top_k, _optional_type(memory_type), filters, context, min_score)

    def recall_with_scores(
        self,
        query: Any,
        top_k: Any = 5,
        memory_type: Any = None,
        filters: Any = None,
        context: Mapping[str, Any] | None = None,
        min_score: Any = None,
    ) -> list[RecallHit]:
        found = self.client.recall_with_scores(
            query, top_k, _optional_type(memory_type), filters, context, min_score
        )
        return [self._hit(m) for m in found]

    def recall_with_context(
        self,
        query: Any,
        context: Mapping[str, Any],
        top_k: Any = 5,
        memory_type: Any = None,
        filters: Any = None,
        min_score: Any = None,
    ) -> list[RecallHit]:
        found = self.client.recall_with_context(
            query, context, top_k, _optional_type(memory_type), filters, min_score
        )
        return [self._hit(m) for m in found]

    def recall_batch(
        self,
        queries: Sequence[Any],
        top_k: Any = 5,
        memory_type: Any = None,
        filters: Any = None,
        min_score: Any = None,
    ) -> list[list[dict[str, Any]]]:
        return self.client.recall_batch(queries, top_k, _optional_type(memory_type), filters, min_score)

    def get_neighbors(
        self, coord: Any, link_type: Any = None, limit: Any = None, direction: str = "out"
    ) -> list[Link]:
        found = self.client.neighbors(canonical_coordinate(coord), link_type, limit, direction)
        if not found:
            return []
        namespace = self.namespace
        links = []
        for n in found:
            a, b = canonical_coordinate(n.from_coord), canonical_coordinate(n.to_coord)
            links.append(
                Link(
                    namespace=namespace,
                    from_id=memory_id(namespace, a),
                    to_id=memory_id(namespace, b),
                    from_coord=a,
                    to_coord=b,
                    link_type=n.type,
                    weight=n.weight,
                    metadata=n.metadata,
                    created_at=n.created_at,
                )
            )
        return links

    def find_shortest_path(
        self, from_coord: Any, to_coord: Any, link_type: Any = None, max_depth: int = 8
    ) -> list[Coordinate]:
        a = canonical_coordinate(from_coord, "frm")
        b = canonical_coordinate(to_coord, "to")
        return [canonical_coordinate(c) for c in self.client.shortest_path(a, b, link_type, max_depth)]

    # -- admin and transfer ---------------------------------------------------------------------
    def memory_stats(self) -> dict[str, Any]:
        stats = self.client.stats().model_dump()
        self._namespace = self._namespace or str(stats["namespace"])
        return stats

    def health_check(self) -> dict[str, dict[str, Any]]:
        return self._health_report(self.client.health())

    @staticmethod
    def _health_report(response: HealthResponse) -> dict[str, dict[str, Any]]:
        return {port: entry.model_dump(exclude_none=True) for port, entry in response.backends.items()}

    def export_memories(self, target: str | Path | IO[str]) -> int:
        return self.client.export(target)

    def import_memories(
        self, source: IO[str], progress: Callable[[int], None] | None = None
    ) -> dict[str, int]:
        """Upload the export (streamed); the server reports no progress, only the counts."""
        return self.client.import_memories(source).model_dump()

    # -- what only a server has -----------------------------------------------------------------
    def metrics(self) -> str:
        """The server's Prometheus text (``GET /metrics``)."""
        return self.client.metrics()

    def live(self) -> LiveResponse:
        """Liveness (``GET /healthz``)."""
        return self.client.healthz()

    def ready(self) -> ReadyResponse:
        """Readiness (``GET /readyz``; not ready is an answer, not an error)."""
        return self.client.readyz()
