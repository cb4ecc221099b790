"""The ports: every backend the core talks to, as typed Protocols.

The core (``somafractalmemory.services``) only ever sees these types.
Adapters in ``somafractalmemory.adapters`` implement them; the factory picks
which. Each method's docstring is the contract the contract tests check.

Common rules for every port:

* Every call is scoped to a ``namespace``; nothing crosses namespaces.
* Ids are the deterministic memory ids of ``models.memory_id``.
* A backend that cannot be reached raises ``errors.BackendUnavailable``;
  driver exceptions never escape an adapter.
* ``health()`` returns quietly when the backend answers, else raises
  ``BackendUnavailable``. ``close()`` releases connections and may be
  called twice.
* Writes take an optional ``events`` argument (the ``MemoryEvent``s of that
  write). An adapter with a transactional outbox (``PostgresStore``) writes
  them in the same transaction as the write, so the write and its events
  commit together or not at all; an adapter without one ignores them. The
  core passes events only when the event bus is that adapter's outbox
  (``IEventBus.transactional``); otherwise the ``EventEmitter`` publishes
  them to the bus after the write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..models import Coordinate, HistoryEntry, Link, Memory, MemoryEvent, MemoryType

__all__ = [
    "Change",
    "Filters",
    "ICache",
    "IEmbedder",
    "IEmbeddingStore",
    "IEventBus",
    "IGraphStore",
    "IKeyValueStore",
    "IKeywordIndex",
    "ILock",
    "ILockManager",
    "IRateLimiter",
    "ISnapshotIndex",
    "IVectorStore",
    "Vector",
    "VectorHit",
    "VectorPoint",
]

Vector = npt.NDArray[np.float32]
#: Recall filters, with the semantics of ``models.matches_filters``.
Filters = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Change:
    """One committed write of one memory, as the canonical store's change feed
    reports it: ``action`` is ``"created"``, ``"updated"`` or ``"deleted"``;
    ``version`` is the memory's version after the write (before it, for a
    delete); ``seq`` orders changes (see ``IKeyValueStore.changes_since``)."""

    seq: int
    namespace: str
    memory_id: str
    version: int
    action: str


@runtime_checkable
class IKeyValueStore(Protocol):
    """The canonical store: memories by id, their history, a coordinate index.

    It is the source of truth; vectors and keyword indexes are derived from
    it and can be rebuilt from it.
    """

    name: str

    def put_many(
        self,
        memories: Sequence[Memory],
        history: Sequence[HistoryEntry],
        events: Sequence[MemoryEvent] = (),
        expect_previous: bool = False,
    ) -> None:
        """Insert or replace each memory (by ``(namespace, id)``) and append the
        history entries, atomically: after a crash either all of the batch is
        stored or none of it. One round trip per batch where the backend allows.
        ``events`` go to the outbox in the same transaction (see module docstring).

        ``expect_previous``: each memory must replace its version - 1 (version
        1: a memory that does not exist yet). If one does not, because another
        process wrote it since it was read, nothing is stored and
        ``WriteConflict`` is raised. The check and the write are one atomic
        step, across processes."""
        ...

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Memory]:
        """The memories with these ids that exist (absent ids are left out).
        Reads never write."""
        ...

    def delete_many(
        self,
        namespace: str,
        ids: Sequence[str],
        history: Sequence[HistoryEntry],
        events: Sequence[MemoryEvent] = (),
    ) -> list[str]:
        """Delete the memories that exist and append ``history`` (their delete
        records), atomically; return the ids actually deleted. An adapter that
        also implements ``IGraphStore`` on the same database removes the
        links touching them in the same transaction. Of ``events``, those whose
        ``memory_id`` was actually deleted go to the outbox in that transaction."""
        ...

    def iter_memories(
        self, namespace: str, memory_type: MemoryType | None = None, page_size: int = 500
    ) -> Iterator[Memory]:
        """Every memory of the namespace (optionally of one type), ordered by
        ``(created_at, id)``, fetched ``page_size`` at a time."""
        ...

    def find_range(
        self, namespace: str, lo: Coordinate, hi: Coordinate, memory_type: MemoryType | None = None
    ) -> list[Memory]:
        """Memories whose coordinate has the same number of dimensions as
        ``lo``/``hi`` and lies in the inclusive box ``lo <= c <= hi``, served
        by an index on coordinates (never a scan of payloads). Ordered by
        coordinate."""
        ...

    def filter_ids(
        self, namespace: str, filters: Filters | None, memory_type: MemoryType | None = None
    ) -> set[str]:
        """Ids of the memories whose payload satisfies ``filters`` and whose
        type is ``memory_type`` (when given)."""
        ...

    def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        """Every recorded change of one memory, oldest first (kept after delete)."""
        ...

    def iter_history(self, namespace: str) -> Iterator[HistoryEntry]:
        """Every history entry of the namespace, oldest first."""
        ...

    def recent(self, namespace: str, n: int, memory_type: MemoryType | None = None) -> list[Memory]:
        """The ``n`` most recently updated memories, newest first."""
        ...

    def important(self, namespace: str, n: int, memory_type: MemoryType | None = None) -> list[Memory]:
        """The ``n`` memories of highest importance (ties: newest first)."""
        ...

    def counts(self, namespace: str) -> dict[str, int]:
        """``{"total": .., "episodic": .., "semantic": ..}`` for the namespace."""
        ...

    def namespaces(self) -> list[str]:
        """Every namespace holding at least one memory."""
        ...

    # -- the change feed: how processes sharing the store keep derived indexes current --

    def change_feed_id(self) -> str:
        """A stable identifier of this store's change feed (the same for every
        process opening the same database; another database has another one),
        so a cursor saved with a snapshot is never applied to a different feed."""
        ...

    def change_seq(self) -> int:
        """The feed's cursor: a number that grows with every committed write
        (``put_many``, ``delete_many``) of any namespace, by any process
        sharing the store, and stays the same while nothing is written (0
        before the first write). Cheap (one indexed read), so readers may
        poll it before every query."""
        ...

    def changes_since(self, seq: int, limit: int = 1000) -> tuple[int, list[Change]]:
        """``(cursor, changes)``: the writes committed after cursor ``seq``,
        oldest first, one ``Change`` per memory written or deleted, about
        ``limit`` at most (one transaction is never split); ``cursor`` is the
        cursor they bring a reader to (``seq`` itself when there are none).
        A write never appears below a cursor once this method or
        ``change_seq`` returned that cursor: a reader applying every batch
        misses nothing."""
        ...

    def change_floor(self) -> int:
        """The lowest cursor ``changes_since`` still answers completely: the
        changes at or below it may have been pruned (``prune_changes``), so a
        reader whose cursor is below it must rebuild from the memories
        themselves. 0 while nothing was pruned."""
        ...

    def prune_changes(self, keep: int) -> int:
        """Drop all but about the newest ``keep`` changes (whole transactions)
        and raise the floor past them; the count dropped."""
        ...

    def health(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class IGraphStore(Protocol):
    """Persisted directed, typed, weighted edges between memories.

    An edge is identified by ``(namespace, from_id, to_id, link_type)``;
    adding it again replaces its weight and metadata.
    """

    name: str

    def add_links(self, links: Sequence[Link], events: Sequence[MemoryEvent] = ()) -> None:
        """Insert or replace each link, atomically (with ``events`` in an outbox)."""
        ...

    def remove_links(
        self,
        namespace: str,
        from_id: str,
        to_id: str,
        link_type: str | None = None,
        events: Sequence[MemoryEvent] = (),
    ) -> int:
        """Remove the edges ``from_id -> to_id`` (of one type, or all types);
        return how many were removed. ``events`` go to an outbox in the same
        transaction, and only when an edge was removed."""
        ...

    def remove_nodes(self, namespace: str, ids: Sequence[str]) -> int:
        """Remove every edge touching any of ``ids``; return how many."""
        ...

    def neighbors(
        self,
        namespace: str,
        memory_id: str,
        link_type: str | None = None,
        direction: str = "out",
        limit: int | None = None,
    ) -> list[Link]:
        """Edges leaving (``out``), entering (``in``) or touching (``both``)
        the node, optionally of one type; ordered by weight then creation;
        at most ``limit``."""
        ...

    def iter_links(self, namespace: str) -> Iterator[Link]:
        """Every edge of the namespace."""
        ...

    def count(self, namespace: str) -> int: ...

    def health(self) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class VectorPoint:
    """A vector to index: ``vector`` is L2-normalised (or all zero).

    ``payload`` is kept for filtering (``Filters``); ``version`` is the
    memory version the vector was computed from.
    """

    id: str
    vector: Vector
    importance_norm: float
    memory_type: MemoryType
    version: int = 1
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class VectorHit:
    """``score = max(0, cosine) * importance_norm`` (the base score)."""

    id: str
    score: float
    cosine: float


@runtime_checkable
class IVectorStore(Protocol):
    """Vectors of memories, searched by the base score.

    Semantics every adapter shares (checked by congruence tests):
    ``score = max(0, cosine(query, vector)) * importance_norm``, in [0, 1];
    hits ordered by score descending (ties by id); ``memory_type`` and
    ``filters`` are applied exactly, *before* the top-k cut; deleted or
    replaced points never come back.
    """

    name: str
    dim: int

    def upsert(self, namespace: str, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points by id (one batch, one round trip)."""
        ...

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        """Remove points; unknown ids are ignored."""
        ...

    def search(
        self,
        namespace: str,
        vector: Vector,
        k: int,
        memory_type: MemoryType | None = None,
        filters: Filters | None = None,
    ) -> list[VectorHit]:
        """The ``k`` best points by base score (fewer if fewer match)."""
        ...

    def cosines(self, namespace: str, vector: Vector, ids: Sequence[str]) -> dict[str, float]:
        """``{id: cosine(query, stored vector)}`` for those ``ids`` that are
        indexed (used to score keyword-only recall candidates)."""
        ...

    def versions(self, namespace: str, ids: Sequence[str] | None = None) -> dict[str, int]:
        """``{id: version}`` of every indexed point (used to reconcile), or,
        given ``ids``, of those of them that are indexed (a cheap per-id check
        used by workers and read-your-writes)."""
        ...

    def count(self, namespace: str) -> int: ...

    def flush(self) -> None:
        """Persist pending state (a no-op where every write is durable)."""
        ...

    def health(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class IKeywordIndex(Protocol):
    """Keyword relevance over the indexed text of memories.

    Scores are BM25-like relevances (> 0, higher is better, not bounded);
    the core normalises them per query.
    """

    name: str

    def index(self, namespace: str, docs: Sequence[tuple[str, str]]) -> None:
        """Insert or replace ``(id, text)`` documents."""
        ...

    def remove(self, namespace: str, ids: Sequence[str]) -> None: ...

    def search(self, namespace: str, query: str, limit: int) -> list[tuple[str, float]]:
        """Up to ``limit`` ``(id, score)`` pairs with score > 0, best first."""
        ...

    def count(self, namespace: str) -> int: ...

    def health(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class IEmbeddingStore(Protocol):
    """The embedding of each memory's current version, kept next to the
    canonical store so that every process sharing it can reuse a vector
    instead of embedding the text again. Derived data: a missing or
    outdated entry only costs an embedding. Entries of a deleted memory go
    with it."""

    name: str

    def put(self, namespace: str, model_id: str, rows: Sequence[tuple[str, int, Vector]]) -> None:
        """Insert or replace ``(memory_id, version, vector)`` rows computed by
        the embedder ``model_id`` (one transaction)."""
        ...

    def get(self, namespace: str, model_id: str, ids: Sequence[str]) -> dict[str, tuple[int, Vector]]:
        """``{memory_id: (version, vector)}`` of those ``ids`` that have a
        vector from ``model_id`` (whatever its version: the caller compares)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ISnapshotIndex(Protocol):
    """A derived index kept in process memory and saved to files (the fast
    core, the in-process keyword index), each namespace's file tagged with
    the change-feed position it reflects, so a process that opens it only
    applies the changes made since (``services.follower``)."""

    def checkpoints(self) -> dict[str, tuple[str, int] | None]:
        """``{namespace: (feed_id, cursor)}`` of the files loaded at open;
        ``None`` for a file that names no position (it needs a full reconcile)."""
        ...

    def set_checkpoint(self, feed_id: str, seq: int) -> None:
        """Declare that the index reflects every change of feed ``feed_id`` up
        to cursor ``seq``. The next flush records it, and writes a
        namespace's file only when the file on disk is not newer."""
        ...

    def discard(self, namespace: str) -> None:
        """Forget what was loaded for ``namespace`` (its file belongs to another
        feed): the namespace starts empty and is rebuilt from the canonical store."""
        ...


@runtime_checkable
class ICache(Protocol):
    """A byte cache with expiry. A miss or an unreachable cache returns None;
    cache failures never fail the caller's operation."""

    name: str

    def get(self, key: str) -> bytes | None: ...

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]: ...

    def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None: ...

    def delete(self, keys: Sequence[str]) -> None: ...

    def health(self) -> None: ...

    def close(self) -> None: ...


class ILock(Protocol):
    """A held lock; ``release`` is idempotent. Usable as a context manager."""

    def release(self) -> None: ...

    def __enter__(self) -> ILock: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class ILockManager(Protocol):
    """Named mutual-exclusion locks with expiry (``ttl_seconds``) so a dead
    holder cannot block others forever."""

    name: str

    def acquire(self, name: str, timeout: float = 10.0, ttl_seconds: float = 30.0) -> ILock:
        """Block up to ``timeout`` seconds; raise ``LockTimeout`` if not acquired."""
        ...


@runtime_checkable
class IRateLimiter(Protocol):
    """A sliding-window request budget shared by everyone using the backend."""

    name: str

    def hit(self, key: str, limit: int, window_seconds: float) -> float:
        """Count one request for ``key``. Return 0.0 if allowed, else the
        seconds until a request would be allowed again (nothing counted)."""
        ...


@runtime_checkable
class IEventBus(Protocol):
    """Carries ``MemoryEvent``s of every write to subscribers / a broker.

    ``transactional`` is True for an outbox living in the canonical store's
    database: the core then hands each write's events to the store, which
    commits them with the write, and never calls ``publish`` for them.
    """

    name: str
    transactional: bool

    def publish(self, events: Sequence[MemoryEvent]) -> None:
        """Hand events over for delivery (validated against the schema)."""
        ...

    def subscribe(self, handler: Callable[[MemoryEvent], None]) -> None: ...

    def pending(self) -> int:
        """Events accepted but not yet delivered (an outbox: its unsent rows)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class IEmbedder(Protocol):
    """Turns texts into vectors.

    ``embed`` returns a float32 array of shape ``(len(texts), dim)`` whose
    rows are L2-normalised (an empty text gives the zero vector). The same
    text always gives the same vector. ``reuse_vectors`` is True when reading
    a stored vector is cheaper than embedding the text again (a model); only
    then are vectors saved for other processes (``IEmbeddingStore``).
    """

    model_id: str
    dim: int
    reuse_vectors: bool

    def embed(self, texts: Sequence[str]) -> Vector: ...
