"""Keeps the derived indexes (vectors, keywords) in step with the canonical store."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..interfaces.storage import IEmbedder, IKeyValueStore, IKeywordIndex, IVectorStore, VectorPoint
from ..models import Memory

__all__ = ["Indexer"]
log = logging.getLogger(__name__)


class Indexer:
    """Embeds memories and writes them to the vector and keyword indexes.

    Every method is idempotent: indexing the same memory version twice
    changes nothing, so replays are safe.
    """

    def __init__(self, embedder: IEmbedder, vectors: IVectorStore, keywords: IKeywordIndex) -> None:
        self.embedder = embedder
        self.vectors = vectors
        self.keywords = keywords

    def index(self, memories: Sequence[Memory]) -> None:
        if not memories:
            return
        by_ns: dict[str, list[Memory]] = {}
        for memory in memories:
            by_ns.setdefault(memory.namespace, []).append(memory)
        for namespace, group in by_ns.items():
            texts = [m.text for m in group]
            matrix = self.embedder.embed(texts)
            points = [
                VectorPoint(
                    id=m.id,
                    vector=matrix[i],
                    importance_norm=m.importance_norm,
                    memory_type=m.memory_type,
                    version=m.version,
                    payload=m.payload,
                )
                for i, m in enumerate(group)
            ]
            self.vectors.upsert(namespace, points)
            self.keywords.index(namespace, [(m.id, texts[i]) for i, m in enumerate(group)])

    def unindex(self, namespace: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        self.vectors.delete(namespace, ids)
        self.keywords.remove(namespace, ids)

    def reconcile(self, namespace: str, kv: IKeyValueStore, batch_size: int = 512) -> tuple[int, int]:
        """Re-index memories whose vector is missing or stale, drop vectors of
        memories that no longer exist, and rebuild the keyword index when its
        size differs from the canonical store's (an in-process index starts
        empty). One pass over the canonical store. Returns ``(reindexed, removed)``."""
        indexed = self.vectors.versions(namespace)
        rebuild_keywords = self.keywords.count(namespace) != kv.counts(namespace)["total"]
        seen: set[str] = set()
        stale: list[Memory] = []
        docs: list[tuple[str, str]] = []
        reindexed = 0
        for memory in kv.iter_memories(namespace, page_size=batch_size):
            seen.add(memory.id)
            if indexed.get(memory.id) != memory.version:
                stale.append(memory)  # index() also writes its keyword document
            elif rebuild_keywords:
                docs.append((memory.id, memory.text))
            if len(stale) >= batch_size:
                self.index(stale)
                reindexed += len(stale)
                stale = []
            if len(docs) >= 4 * batch_size:
                self.keywords.index(namespace, docs)
                docs = []
        if stale:
            self.index(stale)
            reindexed += len(stale)
        if docs:
            self.keywords.index(namespace, docs)
        orphans = [i for i in indexed if i not in seen]
        self.unindex(namespace, orphans)
        if reindexed or orphans:
            self.vectors.flush()
            log.info("reconciled %s: reindexed %d, removed %d", namespace, reindexed, len(orphans))
        return reindexed, len(orphans)
