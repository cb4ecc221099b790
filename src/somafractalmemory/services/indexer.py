"""Keeps the derived indexes (vectors, keywords) in step with the canonical store."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import BackendUnavailable
from ..interfaces.storage import (
    IEmbedder,
    IEmbeddingStore,
    IKeyValueStore,
    IKeywordIndex,
    IVectorStore,
    Vector,
    VectorPoint,
)
from ..models import Memory

__all__ = ["Indexer"]
log = logging.getLogger(__name__)


class Indexer:
    """Embeds memories and writes them to the vector and keyword indexes.

    Every method is idempotent: indexing the same memory version twice
    changes nothing, so replays are safe. With an ``embeddings`` store, every
    vector it computes is saved there (for other processes and for repairs),
    and ``stored`` finds saved vectors so they need not be computed again.
    """

    def __init__(
        self,
        embedder: IEmbedder,
        vectors: IVectorStore,
        keywords: IKeywordIndex,
        embeddings: IEmbeddingStore | None = None,
    ) -> None:
        self.embedder = embedder
        self.vectors = vectors
        self.keywords = keywords
        self.embeddings = embeddings

    def stored(self, namespace: str, memories: Sequence[Memory]) -> dict[str, Vector]:
        """``{id: vector}`` saved for exactly these memory versions by this embedder."""
        if self.embeddings is None or not memories:
            return {}
        found = self.embeddings.get(namespace, self.embedder.model_id, [m.id for m in memories])
        dim = self.embedder.dim
        return {
            m.id: vector
            for m in memories
            if (hit := found.get(m.id)) is not None
            and hit[0] == m.version
            and (vector := hit[1]).shape == (dim,)
        }

    def _embed(
        self, namespace: str, group: Sequence[Memory], texts: list[str], known: Mapping[str, Vector]
    ) -> Vector:
        """The vectors of ``group``: those in ``known``, the others embedded (and saved)."""
        todo = [i for i, m in enumerate(group) if m.id not in known]
        if len(todo) == len(group):
            matrix = self.embedder.embed(texts)
        else:
            matrix = np.empty((len(group), self.embedder.dim), dtype=np.float32)
            for i, m in enumerate(group):
                if m.id in known:
                    matrix[i] = known[m.id]
            if todo:
                matrix[todo] = self.embedder.embed([texts[i] for i in todo])
        if self.embeddings is not None and todo:
            rows = [(group[i].id, group[i].version, matrix[i]) for i in todo]
            self.embeddings.put(namespace, self.embedder.model_id, rows)
        return matrix

    def index(self, memories: Sequence[Memory], known: Mapping[str, Vector] | None = None) -> None:
        """Index these memory versions; ``known`` vectors (by id, e.g. from
        ``stored``) are used as they are, the others are embedded."""
        if not memories:
            return
        by_ns: dict[str, list[Memory]] = {}
        for memory in memories:
            by_ns.setdefault(memory.namespace, []).append(memory)
        for namespace, group in by_ns.items():
            texts = [m.text for m in group]
            matrix = self._embed(namespace, group, texts, known or {})
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
            # keywords first: a vector at a version (what ``wait_indexed`` and
            # workers check) then implies the keyword document is there too
            self.keywords.index(namespace, [(m.id, texts[i]) for i, m in enumerate(group)])
            self.vectors.upsert(namespace, points)

    def wait_indexed(self, memories: Sequence[Memory], timeout: float, poll: float = 0.005) -> None:
        """Block until each memory is indexed at its version or a newer one
        (by event workers); ``BackendUnavailable`` after ``timeout`` seconds."""
        wanted: dict[str, dict[str, int]] = {}
        for m in memories:
            wanted.setdefault(m.namespace, {})[m.id] = m.version
        deadline = time.monotonic() + timeout
        delay = poll
        while wanted:
            for namespace, versions in list(wanted.items()):
                have = self.vectors.versions(namespace, list(versions))
                done = [i for i, v in versions.items() if have.get(i, 0) >= v]
                for i in done:
                    del versions[i]
                if not versions:
                    del wanted[namespace]
            if not wanted:
                return
            if time.monotonic() >= deadline:
                left = sum(len(v) for v in wanted.values())
                raise BackendUnavailable(
                    "event workers",
                    f"{left} stored memories not indexed within {timeout:g}s (the writes are stored)",
                    "soma worker / SOMA_READ_YOUR_WRITES_TIMEOUT",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

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
                self.index(stale, self.stored(namespace, stale))
                reindexed += len(stale)
                stale = []
            if len(docs) >= 4 * batch_size:
                self.keywords.index(namespace, docs)
                docs = []
        if stale:
            self.index(stale, self.stored(namespace, stale))
            reindexed += len(stale)
        if docs:
            self.keywords.index(namespace, docs)
        orphans = [i for i in indexed if i not in seen]
        self.unindex(namespace, orphans)
        if reindexed or orphans:
            self.vectors.flush()
            log.info("reconciled %s: reindexed %d, removed %d", namespace, reindexed, len(orphans))
        return reindexed, len(orphans)
