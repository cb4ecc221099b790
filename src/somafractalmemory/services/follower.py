"""Keeps this process's derived indexes in step with writes made by other processes.

Where the canonical store is shared (a SQLite file, a PostgreSQL database)
but an index lives in process memory (the fast core, the in-process BM25
index), a memory written by another process - another API worker, the
``soma`` CLI - would be missing from this process's recall. The
``IndexFollower`` reads the canonical store's change feed
(``IKeyValueStore.changes_since``) and applies it:

* ``sync()`` runs before every read that uses a derived index (recall,
  batch recall, keyword search). At most every ``interval`` seconds it asks
  ``change_seq()`` (one indexed read); when the cursor moved it fetches the
  changes and, per memory, compares the version in the feed with the version
  indexed here. Writes of this process are already indexed at that version,
  so they cost one comparison; others are loaded from the store and indexed
  with the vector the writer saved in the embedding store
  (``IEmbeddingStore``), or unindexed when deleted. A memory whose vector is
  not saved yet (its writer is still embedding) waits up to ``grace``
  seconds before this process embeds it itself.
* ``lock`` serialises "write the store, then index" (``StoreService``,
  imports) with "read the store, then index" here, so neither can overwrite
  a newer version indexed by the other.
* ``start()`` opens: a namespace whose snapshot files (``ISnapshotIndex``)
  name a position of this feed only replays the changes since; others are
  reconciled in full. ``checkpoint()`` (on close) catches up and records the
  position in the snapshots, so the next start replays only what is new.
* The feed keeps only its newest changes (``services.retention``): a
  position below its floor (``change_floor()``), at start or later, means
  changes were pruned unseen, and the namespaces are reconciled in full.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..interfaces.storage import (
    Change,
    IEmbedder,
    IEmbeddingStore,
    IKeyValueStore,
    IKeywordIndex,
    ISnapshotIndex,
    IVectorStore,
)
from ..models import Memory
from .indexer import Indexer

__all__ = ["IndexFollower"]
log = logging.getLogger(__name__)


class _NoKeywords:
    """Stands in for a keyword index this process need not maintain (a shared one)."""

    name = "none"

    def index(self, namespace: str, docs: Sequence[tuple[str, str]]) -> None:
        return None

    def remove(self, namespace: str, ids: Sequence[str]) -> None:
        return None

    def search(self, namespace: str, query: str, limit: int) -> list[tuple[str, float]]:
        return []

    def count(self, namespace: str) -> int:
        return 0

    def health(self) -> None:
        return None

    def close(self) -> None:
        return None


class IndexFollower:
    """Applies the canonical store's change feed to this process's indexes.

    ``vectors_local`` / ``keywords_local`` say which indexes live in this
    process (the others are shared and kept by whoever writes). ``interval``
    is the longest a read may miss a foreign write (0 = check before every
    read); ``grace`` how long a memory may wait for its writer's vector.
    """

    def __init__(
        self,
        kv: IKeyValueStore,
        vectors: IVectorStore,
        keywords: IKeywordIndex,
        embedder: IEmbedder,
        embeddings: IEmbeddingStore | None = None,
        *,
        vectors_local: bool = True,
        keywords_local: bool = True,
        interval: float = 0.2,
        grace: float = 2.0,
        batch: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kv = kv
        self.vectors = vectors
        self.keywords = keywords
        self.vectors_local = vectors_local
        self.keywords_local = keywords_local
        self.indexer = Indexer(embedder, vectors, keywords if keywords_local else _NoKeywords(), embeddings)
        #: full repairs at start also repair a shared keyword index, as ``core.reconcile`` does
        self._reconciler = Indexer(embedder, vectors, keywords, embeddings)
        self.interval = max(0.0, float(interval))
        self.grace = max(0.0, float(grace))
        self.batch = max(1, int(batch))
        self.lock = threading.RLock()
        self.cursor = 0
        counters = ("catch_ups", "changes", "skipped", "indexed", "embedded", "removed", "rebuilds")
        self.stats = dict.fromkeys(counters, 0)
        self._clock = clock
        self._next_check = 0.0
        self._closed = False
        self._feed: str | None = None
        self._pending: dict[tuple[str, str], float] = {}  # waiting for the writer's vector: deadline
        local: list[object] = [x for x, on in ((vectors, vectors_local), (keywords, keywords_local)) if on]
        snapshots: list[ISnapshotIndex] = [x for x in local if isinstance(x, ISnapshotIndex)]
        self._snapshots: list[ISnapshotIndex] = snapshots if len(snapshots) == len(local) else []

    # -- opening ------------------------------------------------------------
    def start(self, namespaces: Iterable[str] = ()) -> dict[str, Any]:
        """Bring every namespace's indexes up to date at open (see module docstring)."""
        with self.lock:
            feed, head = self.kv.change_feed_id(), self.kv.change_seq()
            floor = self.kv.change_floor()
            self._feed = feed
            marks = [s.checkpoints() for s in self._snapshots]
            names = self._namespaces(marks) | set(namespaces)
            replay: dict[str, int] = {}
            full: list[str] = []
            for ns in sorted(names):
                found = [m.get(ns) for m in marks]
                if marks and all(c is not None and c[0] == feed and floor <= c[1] <= head for c in found):
                    replay[ns] = min(c[1] for c in found if c is not None)
                    continue
                if any(c is not None and (c[0] != feed or not floor <= c[1] <= head) for c in found):
                    for snapshot in self._snapshots:  # another database's, or too old to replay: start over
                        snapshot.discard(ns)
                full.append(ns)
            self.cursor = min([head, *replay.values()])
            self._mark()  # true already: what a reconcile writes reflects at least ``head``
            for ns in full:
                self._reconciler.reconcile(ns, self.kv)
            replayed = self._catch_up()
            log.info(
                "indexes opened: %d namespaces replayed %d changes, %d reconciled",
                len(replay), replayed, len(full),
            )  # fmt: skip
            return {
                "replayed_namespaces": len(replay),
                "changes": replayed,
                "reconciled_namespaces": len(full),
            }

    # -- reads --------------------------------------------------------------
    def sync(self, force: bool = False, limit: int | None = None) -> None:
        """Before a read: apply foreign writes, at most every ``interval``
        seconds (``force``: now); ``limit`` stops after about that many
        changes (the rest waits for the next call)."""
        now = self._clock()
        if not force and now < self._next_check:
            return
        self._next_check = now + self.interval
        if not self.behind():
            return
        with self.lock:
            self._catch_up(limit)

    def behind(self) -> bool:
        """Whether foreign writes (or embeddings they wait for) remain to apply:
        one indexed read, no lock."""
        return bool(self._pending) or self.kv.change_seq() != self.cursor

    def checkpoint(self) -> None:
        """Catch up (embedding whatever still waits) and record the position in the snapshots."""
        with self.lock:
            self._catch_up()
            if self._pending:
                self._retry_pending(wait=False)
            self._mark()

    def close(self) -> None:
        """Checkpoint once; later calls do nothing (the stores may be closed)."""
        if not self._closed:
            self._closed = True
            self.checkpoint()

    # -- applying -----------------------------------------------------------
    def _catch_up(self, limit: int | None = None) -> int:
        start = self.cursor
        applied = 0
        while limit is None or applied < limit:
            step = self.batch if limit is None else max(1, min(self.batch, limit - applied))
            cursor, changes = self.kv.changes_since(self.cursor, step)
            if not changes:
                break
            self._apply(changes)
            self.cursor = cursor
            applied += len(changes)
        # Pruned past where this catch-up started (before it, or while it read):
        # what it read may have a gap, so the memories themselves are read again.
        if start < self.kv.change_floor():
            return self._rebuild()
        if applied:
            self.stats["catch_ups"] += 1
            self.stats["changes"] += applied
        if self._pending:
            self._retry_pending(wait=True)
        if applied and not self._pending:
            self._mark()
        return applied

    def _rebuild(self) -> int:
        """Reconcile every namespace from the memories and continue from the
        head: the feed no longer holds every change since the cursor."""
        head = self.kv.change_seq()
        names = self._namespaces([s.checkpoints() for s in self._snapshots])
        log.warning(
            "the change feed was pruned past this process's position (%d); rebuilding %d namespaces",
            self.cursor, len(names),
        )  # fmt: skip
        for ns in sorted(names):
            self._reconciler.reconcile(ns, self.kv)
        self._pending.clear()
        self.cursor = head
        self.stats["rebuilds"] += 1
        self._mark()
        return 0

    def _namespaces(self, marks: Sequence[Mapping[str, Any]]) -> set[str]:
        """The namespaces holding memories, and those the snapshots (``marks``) know."""
        return set(self.kv.namespaces()) | {ns for m in marks for ns in m}

    def _mark(self) -> None:
        """Tell the snapshots they reflect every change up to the cursor (true
        when nothing waits; any flush from now on records it)."""
        if self._feed is None:
            self._feed = self.kv.change_feed_id()
        for snapshot in self._snapshots:
            snapshot.set_checkpoint(self._feed, self.cursor)

    def _apply(self, changes: Sequence[Change]) -> None:
        last: dict[str, dict[str, Change]] = {}
        deleted: dict[str, set[str]] = {}
        for change in changes:
            last.setdefault(change.namespace, {})[change.memory_id] = change
            if change.action == "deleted":  # a later write may reuse the version: always look again
                deleted.setdefault(change.namespace, set()).add(change.memory_id)
        for ns, latest in last.items():
            gone = deleted.get(ns, set())
            if self.vectors_local:
                have = self.vectors.versions(ns, list(latest))
                todo = [
                    i
                    for i, c in latest.items()
                    if (i in have or c.action != "deleted") and (i in gone or have.get(i) != c.version)
                ]
            else:
                todo = list(latest)
            self.stats["skipped"] += len(latest) - len(todo)
            if todo:
                self._refresh(ns, todo, gone)

    def _refresh(self, ns: str, ids: Sequence[str], force: set[str], wait: bool = True) -> None:
        """Index the current version of ``ids`` (unindex those that are gone)."""
        current = self.kv.get_many(ns, ids)
        gone = [i for i in ids if i not in current]
        if gone:
            if self.vectors_local:
                self.vectors.delete(ns, gone)
            if self.keywords_local:
                self.keywords.remove(ns, gone)
            self.stats["removed"] += len(gone)
            for i in gone:
                self._pending.pop((ns, i), None)
        fresh = list(current.values())
        if not fresh:
            return
        if not self.vectors_local:
            self.keywords.index(ns, [(m.id, m.text) for m in fresh])
            self.stats["indexed"] += len(fresh)
            return
        have = self.vectors.versions(ns, [m.id for m in fresh])
        for m in fresh:
            if m.id not in force and have.get(m.id) == m.version:
                self._pending.pop((ns, m.id), None)  # indexed meanwhile (by a write of this process)
        fresh = [m for m in fresh if m.id in force or have.get(m.id) != m.version]
        known = self.indexer.stored(ns, fresh)
        ready = self._ready(ns, fresh, known, wait)
        waiting = [m.id for m in fresh if m.id in force and (ns, m.id) in self._pending]
        if waiting:  # deleted and written again: drop the old content while the new one waits
            self.vectors.delete(ns, waiting)
            if self.keywords_local:
                self.keywords.remove(ns, waiting)
        self.indexer.index(ready, known)
        self.stats["indexed"] += len(ready)
        self.stats["embedded"] += sum(1 for m in ready if m.id not in known)

    def _ready(self, ns: str, fresh: list[Memory], known: dict[str, Any], wait: bool) -> list[Memory]:
        """Those of ``fresh`` to index now; the others wait for their writer's vector."""
        if self.indexer.embeddings is None or not wait:
            for m in fresh:
                self._pending.pop((ns, m.id), None)
            return fresh
        now = self._clock()
        ready = []
        for m in fresh:
            key = (ns, m.id)
            if m.id in known or now >= self._pending.setdefault(key, now + self.grace):
                self._pending.pop(key, None)
                ready.append(m)
        return ready

    def _retry_pending(self, wait: bool) -> None:
        by_ns: dict[str, list[str]] = {}
        for ns, mid in list(self._pending):
            by_ns.setdefault(ns, []).append(mid)
        for ns, ids in by_ns.items():
            self._refresh(ns, ids, set(), wait)
