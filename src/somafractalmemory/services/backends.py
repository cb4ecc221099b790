"""The set of adapters one memory system runs on (built by the factory)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..interfaces.storage import (
    ICache,
    IEmbedder,
    IEmbeddingStore,
    IEventBus,
    IGraphStore,
    IKeyValueStore,
    IKeywordIndex,
    ILockManager,
    IRateLimiter,
    IVectorStore,
)
from .retention import ChangeFeedRetention

if TYPE_CHECKING:
    from .follower import IndexFollower

__all__ = ["Backends", "Options"]

_NO_LOCK: AbstractContextManager[Any] = nullcontext()


@dataclass
class Options:
    """Behaviour switches of the core (plain values; settings live at the edges)."""

    #: False when event workers do the indexing (the evented modes): writes
    #: return without embedding.
    index_synchronously: bool = True
    #: With workers indexing: wait, by default, until a stored version is indexed.
    read_your_writes: bool = False
    #: Seconds such a wait may take before ``BackendUnavailable``.
    index_wait_timeout: float = 10.0
    reconcile_on_start: bool = True
    validate_events: bool = True
    recency_half_life_seconds: float = 30 * 86400.0
    max_memory_size: int | None = None
    decay_enabled: bool = False
    decay_fields: dict[str, float] = field(default_factory=dict)
    decay_interval_seconds: float = 86400.0
    actor: str = "library"
    #: How many of the newest changes the canonical store's change feed keeps
    #: (``services.retention``); 0 keeps every change.
    change_feed_keep: int = 1_000_000


@dataclass
class Backends:
    """Every port the core needs, wired to concrete adapters."""

    kv: IKeyValueStore
    graph: IGraphStore
    vectors: IVectorStore
    keywords: IKeywordIndex
    cache: ICache
    locks: ILockManager
    rate_limiter: IRateLimiter
    bus: IEventBus
    embedder: IEmbedder
    mode: str = "test"
    options: Options = field(default_factory=Options)
    #: Vectors saved beside the canonical store, shared by the processes using it.
    embeddings: IEmbeddingStore | None = None
    #: Applies other processes' writes to this process's indexes (``services.follower``);
    #: None where every index is shared or nothing else writes (TEST).
    follower: IndexFollower | None = None
    #: The canonical store behind ``kv`` when ``kv`` is a read cache in front of it
    #: (``adapters.hybrid``); None when ``kv`` is the canonical store itself.
    canonical: IKeyValueStore | None = None

    @cached_property
    def retention(self) -> ChangeFeedRetention:
        """Prunes the canonical store's change feed as this process writes."""
        return ChangeFeedRetention(self.truth, self.options.change_feed_keep)

    @property
    def truth(self) -> IKeyValueStore:
        """What a write reads current versions from: the canonical store, never a cache."""
        return self.kv if self.canonical is None else self.canonical

    @property
    def index_lock(self) -> AbstractContextManager[Any]:
        """Held from a canonical write until its indexing is done (see ``services.follower``)."""
        return self.follower.lock if self.follower is not None else _NO_LOCK

    def close(self) -> None:
        """Catch up and checkpoint, flush derived indexes and close every adapter once."""
        try:
            if "retention" in self.__dict__:  # built: a prune may be under way
                self.retention.join()
            if self.follower is not None:
                self.follower.close()
            self.vectors.flush()
        finally:
            seen: set[int] = set()
            extra = () if self.embeddings is None else (self.embeddings,)
            for adapter in (self.kv, self.graph, self.vectors, self.keywords, self.cache, self.bus, *extra):
                if id(adapter) in seen:
                    continue
                seen.add(id(adapter))
                adapter.close()
