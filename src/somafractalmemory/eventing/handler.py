"""The derived work of events: what a worker does with a batch.

The handler never trusts an event's content for the work itself: for every
memory an event names, it reads the memory's *current* state from the
canonical store and brings the indexes in step with it:

* the memory exists and its indexed version differs (or is missing): embed
  it and write its vector and keyword document;
* it exists at the indexed version: nothing (a duplicate or a replay);
* it no longer exists: remove it from the indexes and the cache.

So replays, duplicates and reordering change nothing: handling a batch
twice costs one version check per memory. A ``memory.deleted`` event forces
a re-index when the memory exists again (it may have been re-created at the
version the index holds from before). Link events need no derived work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..interfaces.storage import IKeyValueStore, IVectorStore
from ..models import MemoryEvent
from ..services.indexer import Indexer

__all__ = ["HandleResult", "IndexingHandler"]

Invalidate = Callable[[str, Sequence[str]], None]


@dataclass
class HandleResult:
    """What a batch changed: memories (re)indexed and removed from the indexes."""

    indexed: int = 0
    unindexed: int = 0


class IndexingHandler:
    """Keeps vectors and keyword documents in step with the canonical store."""

    def __init__(
        self,
        kv: IKeyValueStore,
        indexer: Indexer,
        vectors: IVectorStore,
        invalidate: Invalidate | None = None,
    ) -> None:
        self.kv = kv
        self.indexer = indexer
        self.vectors = vectors
        self.invalidate = invalidate

    def __call__(self, events: Sequence[MemoryEvent]) -> HandleResult:
        # namespace -> {memory id: a delete was seen}
        touched: dict[str, dict[str, bool]] = {}
        for event in events:
            if not event.type.startswith("memory."):
                continue  # link.created / link.deleted: nothing derived from links
            ids = touched.setdefault(event.namespace, {})
            ids[event.memory_id] = ids.get(event.memory_id, False) or event.type == "memory.deleted"
        result = HandleResult()
        for namespace, ids in touched.items():
            current = self.kv.get_many(namespace, list(ids))
            indexed = self.vectors.versions(namespace, list(ids))
            stale = [m for i, m in current.items() if ids[i] or indexed.get(i) != m.version]
            gone = [i for i in ids if i not in current]
            if stale:
                self.indexer.index(stale)
                result.indexed += len(stale)
            if gone:
                result.unindexed += sum(1 for i in gone if i in indexed)
                self.indexer.unindex(namespace, gone)
            deleted = [i for i, was_deleted in ids.items() if was_deleted]
            if deleted and self.invalidate is not None:
                self.invalidate(namespace, deleted)
        return result
