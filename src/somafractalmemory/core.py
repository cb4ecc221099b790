"""``SomaFractalMemoryEnterprise``: the public facade over the core services.

It holds no logic of its own: each method validates nothing and stores
nothing itself, it hands the call to the service for that concern
(``services.store``, ``services.recall``, ``services.graph``, ...).
Build one with ``factory.create_memory_system``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from . import gcpause
from .errors import InvalidInput, SFMError
from .interfaces.storage import ILock, Vector
from .models import (
    Coordinate,
    HistoryEntry,
    Link,
    Memory,
    MemoryType,
    RecallHit,
    canonical_coordinate,
    memory_id,
    validate_namespace,
)
from .services.backends import Backends
from .services.events import EventEmitter
from .services.graph import GraphService
from .services.hooks import Hooks
from .services.indexer import Indexer
from .services.lifecycle import LifecycleService
from .services.recall import RecallRequest, RecallService
from .services.store import StoreService, parse_bulk_item
from .services.transfer import TransferService

#: Bulk writes of at least this many items pause the cyclic garbage collector.
BULK_GC_PAUSE_FROM = 100

__all__ = ["MemoryType", "SomaFractalMemoryEnterprise"]


class SomaFractalMemoryEnterprise:
    """One namespace of a memory system. See SPEC section 3 for each method."""

    def __init__(self, namespace: str, backends: Backends) -> None:
        self.namespace = validate_namespace(namespace)
        self.backends = backends
        self.hooks = Hooks()
        self.indexer = Indexer(backends.embedder, backends.vectors, backends.keywords, backends.embeddings)
        self.events = EventEmitter(backends.bus, backends.options.validate_events)
        self._store = StoreService(self.namespace, backends, self.indexer, self.events, self.hooks)
        self._graph = GraphService(self.namespace, backends, self.events)
        self._recall = RecallService(self.namespace, backends, self._graph, self.hooks)
        self._lifecycle = LifecycleService(self.namespace, backends, self._store, self._graph)
        self._transfer = TransferService(self.namespace, backends, self.indexer)

    def for_namespace(self, namespace: str) -> SomaFractalMemoryEnterprise:
        """Another namespace over the same backends."""
        return SomaFractalMemoryEnterprise(namespace, self.backends)

    def close(self) -> None:
        self.backends.close()

    # -- writes -----------------------------------------------------------
    def store_memory(
        self,
        coordinate: Any,
        payload: Any,
        memory_type: Any = MemoryType.EPISODIC,
        wait_indexed: bool | None = None,
    ) -> Memory:
        """Store (insert or update) one memory. ``wait_indexed``: where event
        workers index (evented modes), wait until they have indexed it
        (default: the ``SOMA_READ_YOUR_WRITES`` setting)."""
        return self._store.store(coordinate, payload, memory_type, wait_indexed)

    def remember(
        self, payload: Any, coordinate: Any = None, memory_type: Any = MemoryType.EPISODIC
    ) -> Memory:
        return self._store.remember(payload, coordinate, memory_type)

    def store_memories_bulk(self, items: Iterable[Any], wait_indexed: bool | None = None) -> list[Memory]:
        batch = items if isinstance(items, Sequence) else list(items)
        with gcpause.paused(len(batch) >= BULK_GC_PAUSE_FROM):  # see gcpause
            return self._store.store_many(
                (parse_bulk_item(item, i) for i, item in enumerate(batch)), wait_indexed=wait_indexed
            )

    def set_importance(self, coordinate: Any, importance: Any) -> Memory:
        return self._store.revise(coordinate, lambda current: {**current.payload, "importance": importance})

    def delete(self, coordinate: Any) -> bool:
        return bool(self._store.delete_many([coordinate]))

    def forget(self, coordinate: Any) -> bool:
        return self.delete(coordinate)

    def delete_many(self, coordinates: Sequence[Any]) -> int:
        return len(self._store.delete_many(list(coordinates)))

    # -- reads ------------------------------------------------------------
    def get_memory(self, coordinate: Any) -> Memory | None:
        """The full ``Memory`` record at a coordinate, or ``None``."""
        mid = memory_id(self.namespace, canonical_coordinate(coordinate))
        return self.backends.kv.get_many(self.namespace, [mid]).get(mid)

    def retrieve(self, coordinate: Any) -> dict[str, Any] | None:
        memory = self.get_memory(coordinate)
        return memory.public_payload() if memory else None

    def retrieve_memories(self, memory_type: Any = None) -> Iterator[dict[str, Any]]:
        mtype = MemoryType.parse_optional(memory_type)
        return (m.public_payload() for m in self.backends.kv.iter_memories(self.namespace, mtype))

    def get_all_memories(self) -> Iterator[dict[str, Any]]:
        return self.retrieve_memories()

    def find_by_coordinate_range(
        self, min_coord: Any, max_coord: Any, memory_type: Any = None
    ) -> list[Memory]:
        lo = canonical_coordinate(min_coord, "min")
        hi = canonical_coordinate(max_coord, "max")
        if len(lo) != len(hi):
            raise InvalidInput("max", f"must have as many values as min ({len(lo)})")
        if any(a > b for a, b in zip(lo, hi, strict=True)):
            raise InvalidInput("min", "every value must be <= the matching value of max")
        mtype = MemoryType.parse_optional(memory_type)
        return self.backends.kv.find_range(self.namespace, lo, hi, mtype)

    def get_versions(self, coordinate: Any) -> list[HistoryEntry]:
        mid = memory_id(self.namespace, canonical_coordinate(coordinate))
        return self.backends.kv.history(self.namespace, mid)

    def get_recent(self, n: int = 10, memory_type: Any = None) -> list[Memory]:
        mtype = MemoryType.parse_optional(memory_type)
        return self.backends.kv.recent(self.namespace, self._count(n), mtype)

    def get_important(self, n: int = 10, memory_type: Any = None) -> list[Memory]:
        mtype = MemoryType.parse_optional(memory_type)
        return self.backends.kv.important(self.namespace, self._count(n), mtype)

    @staticmethod
    def _count(n: Any) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10_000:
            raise InvalidInput("n", "must be an integer from 1 to 10000")
        return n

    # -- recall -----------------------------------------------------------
    def recall_with_scores(
        self,
        query: Any,
        top_k: Any = 5,
        memory_type: Any = None,
        filters: Any = None,
        context: Mapping[str, Any] | None = None,
        min_score: Any = None,
        weights: Mapping[str, Any] | None = None,
    ) -> list[RecallHit]:
        request = RecallRequest.build(query, top_k, memory_type, filters, context, min_score, weights)
        return self._recall.recall(request)

    def recall(
        self,
        query: Any,
        top_k: Any = 5,
        memory_type: Any = None,
        filters: Any = None,
        context: Mapping[str, Any] | None = None,
        min_score: Any = None,
    ) -> list[dict[str, Any]]:
        hits = self.recall_with_scores(query, top_k, memory_type, filters, context, min_score)
        return [h.memory.public_payload() for h in hits]

    def recall_batch(
        self,
        queries: Sequence[Any],
        top_k: Any = 5,
        memory_type: Any = None,
        filters: Any = None,
        min_score: Any = None,
    ) -> list[list[dict[str, Any]]]:
        if not isinstance(queries, (list, tuple)) or not queries or len(queries) > 256:
            raise InvalidInput("queries", "must be a list of 1 to 256 strings")
        requests = []
        for i, q in enumerate(queries):
            try:
                requests.append(RecallRequest.build(q, top_k, memory_type, filters, None, min_score))
            except InvalidInput as exc:
                field = f"queries[{i}]" if exc.field == "query" else exc.field
                raise InvalidInput(field, exc.message) from None
        return [[h.memory.public_payload() for h in hits] for hits in self._recall.recall_many(requests)]

    def recall_with_context(
        self,
        query: Any,
        context: Mapping[str, Any],
        top_k: Any = 5,
        memory_type: Any = None,
        filters: Any = None,
        min_score: Any = None,
    ) -> list[RecallHit]:
        return self.recall_with_scores(query, top_k, memory_type, filters, context or {}, min_score)

    def keyword_search(
        self, term: Any, top_k: Any = 10, memory_type: Any = None, filters: Any = None
    ) -> list[dict[str, Any]]:
        return [
            h.memory.public_payload() for h in self._recall.keyword_search(term, top_k, memory_type, filters)
        ]

    # names kept from the original
    def hybrid_recall_with_scores(
        self, query: Any, top_k: Any = 5, memory_type: Any = None, filters: Any = None
    ) -> list[RecallHit]:
        return self.recall_with_scores(query, top_k, memory_type, filters)

    def find_hybrid_by_type(
        self, query: Any, top_k: Any = 5, memory_type: Any = None, filters: Any = None
    ) -> list[dict[str, Any]]:
        return self.recall(query, top_k, memory_type, filters)

    def find_hybrid_with_context(
        self,
        query: Any,
        context: Mapping[str, Any],
        top_k: Any = 5,
        memory_type: Any = None,
        filters: Any = None,
    ) -> list[dict[str, Any]]:
        hits = self.recall_with_context(query, context, top_k, memory_type, filters)
        return [h.memory.public_payload() for h in hits]

    def embed_text(self, text: str) -> Vector:
        if not isinstance(text, str):
            raise InvalidInput("text", "must be a string")
        vector: Vector = self.backends.embedder.embed([text])[0]
        return vector

    # -- graph ------------------------------------------------------------
    def link_memories(
        self,
        from_coord: Any,
        to_coord: Any,
        link_type: Any = "related",
        weight: Any = 1.0,
        metadata: dict[str, Any] | None = None,
    ) -> Link:
        return self._graph.link(from_coord, to_coord, link_type, weight, metadata)

    def unlink_memories(self, from_coord: Any, to_coord: Any, link_type: Any = None) -> int:
        return self._graph.unlink(from_coord, to_coord, link_type)

    def get_neighbors(
        self, coord: Any, link_type: Any = None, limit: Any = None, direction: str = "out"
    ) -> list[Link]:
        return self._graph.neighbors(coord, link_type, limit, direction)

    def find_shortest_path(
        self, from_coord: Any, to_coord: Any, link_type: Any = None, max_depth: int = 8
    ) -> list[Coordinate]:
        return self._graph.shortest_path(from_coord, to_coord, link_type, max_depth)

    def get_linked_memories(self, coordinate: Any, link_type: Any = None, depth: Any = 1) -> list[Memory]:
        return self._graph.linked_memories(coordinate, link_type, depth)

    # -- lifecycle, transfer, admin ----------------------------------------
    def run_decay_once(self) -> dict[str, int]:
        return self._lifecycle.run_once()

    def consolidate_memories(self, window_seconds: float = 86400.0) -> list[Memory]:
        return self._lifecycle.consolidate(window_seconds)

    def export_memories(self, target: str | Path | IO[str]) -> int:
        return self._transfer.export(target)

    def export_lines(self) -> Iterator[str]:
        return self._transfer.lines()

    def import_memories(
        self, source: str | Path | IO[str] | IO[bytes], progress: Callable[[int], None] | None = None
    ) -> dict[str, int]:
        return self._transfer.import_(source, progress)

    def reconcile(self) -> tuple[int, int]:
        """Bring the vector and keyword indexes in step with the canonical store."""
        return self.indexer.reconcile(self.namespace, self.backends.kv)

    def reindex(
        self, batch_size: int = 1000, progress: Callable[[int], None] | None = None
    ) -> dict[str, int]:
        """Re-embed every memory of the namespace with the current embedder and
        rewrite its vector and keyword entries, ``batch_size`` at a time; then
        drop index entries of memories that no longer exist. Returns
        ``{"reindexed": n, "removed": m}``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInput("batch_size", "must be a positive integer")
        done = 0
        batch: list[Memory] = []
        for memory in self.backends.kv.iter_memories(self.namespace, page_size=batch_size):
            batch.append(memory)
            if len(batch) >= batch_size:
                self.indexer.index(batch)
                done += len(batch)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            self.indexer.index(batch)
            done += len(batch)
            if progress:
                progress(len(batch))
        _, removed = self.reconcile()
        self.backends.vectors.flush()
        return {"reindexed": done, "removed": removed}

    def acquire_lock(self, name: str, timeout: float = 10.0) -> ILock:
        if not isinstance(name, str) or not name:
            raise InvalidInput("name", "must be a non-empty string")
        return self.backends.locks.acquire(f"{self.namespace}:{name}", timeout)

    def set_hook(self, event: str, fn: Callable[..., Any] | None) -> None:
        self.hooks.set(event, fn)

    def memory_stats(self) -> dict[str, Any]:
        counts = self.backends.kv.counts(self.namespace)
        return {
            "namespace": self.namespace,
            "total_memories": counts["total"],
            "episodic": counts["episodic"],
            "semantic": counts["semantic"],
            "links": self.backends.graph.count(self.namespace),
            "vectors": self.backends.vectors.count(self.namespace),
            "keyword_documents": self.backends.keywords.count(self.namespace),
            "pending_events": self.backends.bus.pending(),
            "mode": self.backends.mode,
        }

    def health_check(self) -> dict[str, dict[str, Any]]:
        """``{port: {"backend", "ok", "latency_ms", "error"?}}`` for every backend."""
        b = self.backends
        report: dict[str, dict[str, Any]] = {}
        for port, adapter in (
            ("kv", b.kv),
            ("graph", b.graph),
            ("vectors", b.vectors),
            ("keywords", b.keywords),
            ("cache", b.cache),
        ):
            started = time.perf_counter()
            entry: dict[str, Any] = {"backend": getattr(adapter, "name", type(adapter).__name__)}
            try:
                adapter.health()
                entry["ok"] = True
            except SFMError as exc:
                entry["ok"] = False
                entry["error"] = str(exc)
            entry["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
            report[port] = entry
        report["embedder"] = {"backend": b.embedder.model_id, "ok": True, "latency_ms": 0.0}
        report["events"] = {"backend": b.bus.name, "ok": True, "pending": b.bus.pending(), "latency_ms": 0.0}
        return report
