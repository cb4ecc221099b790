"""``CachedKeyValueStore``: a read-through cache in front of the canonical store.

Any ``IKeyValueStore`` plus any ``ICache`` (no driver is imported here).
The canonical store stays the only truth: writes go to it first-class,
and losing the cache makes reads slower, never wrong.

How a cached value can never be served stale
--------------------------------------------

Two cache keys per memory: ``d`` holds the memory (its fill token, a space,
the memory as JSON), ``g`` holds the key's current fill token (random, never
reused).

1. A cached memory is served only while ``g`` exists and equals its tag;
   both keys are read together. With ``RedisCache`` a whole ``get_many`` is
   one round trip (``read_tagged``, a Lua script that also creates the
   missing tokens, see 3), then the canonical read of the misses, then one
   round trip to fill them (``set_many``).
2. Writes (``put_many``, ``delete_many``) delete ``d`` and ``g`` before
   *and* after the canonical write. (With ``RedisCache`` the first delete
   is sent before the write and its answer read after it: Redis and the
   canonical store work at the same time. The second is a plain delete.)
   Deleting ``g`` kills every copy filled with its token, including a fill
   still in flight.
3. A fill learns its token *before* it reads the canonical store: the
   existing ``g``, or a fresh one set atomically by the script that read
   (with a cache that has no ``read_tagged``: one it sets and reads back).
   A fill that read the old value before a write therefore carries a token
   the write's second delete removed, and can never become valid, however
   late its ``set`` lands (e.g. queued in a socket while Redis was paused).
4. A cache that cannot be reached turns reads into misses and drops fills.
   Its deletes must not be lost: ``RedisCache`` journals an unacknowledged
   delete and re-sends it before serving anything again (see its module).
5. A second, cache-independent guard: the store remembers the
   ``(updated_at, version)`` it last wrote, or the time it deleted, for
   ``FLOOR_ENTRIES`` recent ids, and refuses a cached copy older than that.

Limit: during a partition between one process and the cache, *another*
process can serve the pre-write copy until the writer's journal reaches the
cache (it retries every second) or the copy's ``ttl_seconds`` runs out.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import cast

from ..errors import InvalidInput
from ..interfaces.storage import Change, Filters, ICache, IKeyValueStore
from ..models import Coordinate, HistoryEntry, Memory, MemoryEvent, MemoryType

__all__ = ["CachedKeyValueStore", "PostgresRedisHybridStore"]

#: Built once (``json.dumps`` with options builds one per call).
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
#: How many recently written ids keep a freshness floor (per store).
FLOOR_ENTRIES = 10_000
Floor = tuple[float, int]


class CachedKeyValueStore:
    """``IKeyValueStore`` by delegation to ``canonical``, with ``get_many``
    served from ``cache`` (entries live ``ttl_seconds``). ``close`` closes both."""

    def __init__(self, canonical: IKeyValueStore, cache: ICache, ttl_seconds: float = 300) -> None:
        if not ttl_seconds > 0:
            raise InvalidInput("ttl_seconds", f"must be > 0, got {ttl_seconds}")
        self.canonical = canonical
        self.cache = cache
        self.ttl_seconds = float(ttl_seconds)
        self.name = f"{canonical.name}+{cache.name}"
        self._floors: OrderedDict[tuple[str, str], Floor] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = {"hits": 0, "misses": 0, "refused": 0}

    @property
    def stats(self) -> dict[str, int]:
        """Approximate counters: ``hits``, ``misses``, ``refused`` (cached
        copies older than this process's own last write)."""
        return dict(self._stats)

    # -- the cached operations ---------------------------------------------

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Memory]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        data = [_key("d", namespace, i) for i in wanted]
        gens = [_key("g", namespace, i) for i in wanted]
        read_tagged = getattr(self.cache, "read_tagged", None)
        if read_tagged is not None:  # one round trip: the data, and every token (created if missing)
            pairs = read_tagged(
                list(zip(data, gens, strict=True)), 2 * self.ttl_seconds, secrets.token_hex(16)
            )
            cached = [(None, None)] * len(wanted) if pairs is None else pairs
        else:
            values = self.cache.get_many([*data, *gens])
            cached = [(values.get(d), values.get(g)) for d, g in zip(data, gens, strict=True)]
        found: dict[str, Memory] = {}
        tokens: dict[str, bytes] = {}
        missing: list[str] = []
        for k, i in enumerate(wanted):
            raw, token = cached[k]
            memory = self._valid(namespace, i, raw, token)
            if memory is not None:
                found[i] = memory
                continue
            missing.append(i)
            if token is not None:
                tokens[i] = token
        self._stats["hits"] += len(found)
        if not missing:
            return found
        self._stats["misses"] += len(missing)
        if read_tagged is None:
            slots = {i: gens[k] for k, i in enumerate(wanted)}
            tokens.update(self._new_tokens([i for i in missing if i not in tokens], slots))
        fresh = self.canonical.get_many(namespace, missing)
        if tokens and fresh:
            slot = {i: data[k] for k, i in enumerate(wanted)}
            fills = [(slot[i], _entry(tokens[i], m)) for i, m in fresh.items() if i in tokens]
            set_many = getattr(self.cache, "set_many", None)
            if set_many is not None:
                set_many(fills, self.ttl_seconds)
            else:
                for key, value in fills:
                    self.cache.set(key, value, self.ttl_seconds)
        found.update(fresh)
        return {i: found[i] for i in wanted if i in found}

    def put_many(
        self,
        memories: Sequence[Memory],
        history: Sequence[HistoryEntry],
        events: Sequence[MemoryEvent] = (),
        expect_previous: bool = False,
    ) -> None:
        keys = _keys((m.namespace, m.id) for m in memories)
        sent = self._delete_begin(keys)
        try:
            self.canonical.put_many(memories, history, events, expect_previous)
        finally:
            sent()
            self.cache.delete(keys)
        self._set_floors({(m.namespace, m.id): (m.updated_at, m.version) for m in memories})

    def delete_many(
        self,
        namespace: str,
        ids: Sequence[str],
        history: Sequence[HistoryEntry],
        events: Sequence[MemoryEvent] = (),
    ) -> list[str]:
        keys = _keys((namespace, i) for i in ids)
        sent = self._delete_begin(keys)
        try:
            deleted = self.canonical.delete_many(namespace, ids, history, events)
        finally:
            sent()
            self.cache.delete(keys)
        gone: Floor = (time.time(), sys.maxsize)
        self._set_floors({(namespace, i): gone for i in deleted})
        return deleted

    def invalidate(self, namespace: str, ids: Sequence[str]) -> None:
        """Drop any cached copy of these memories (used by event workers)."""
        self.cache.delete(_keys((namespace, i) for i in ids))

    # -- everything else reads the canonical store ---------------------------

    def iter_memories(
        self, namespace: str, memory_type: MemoryType | None = None, page_size: int = 500
    ) -> Iterator[Memory]:
        return self.canonical.iter_memories(namespace, memory_type, page_size)

    def find_range(
        self, namespace: str, lo: Coordinate, hi: Coordinate, memory_type: MemoryType | None = None
    ) -> list[Memory]:
        return self.canonical.find_range(namespace, lo, hi, memory_type)

    def filter_ids(
        self, namespace: str, filters: Filters | None, memory_type: MemoryType | None = None
    ) -> set[str]:
        return self.canonical.filter_ids(namespace, filters, memory_type)

    def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        return self.canonical.history(namespace, memory_id)

    def iter_history(self, namespace: str) -> Iterator[HistoryEntry]:
        return self.canonical.iter_history(namespace)

    def recent(self, namespace: str, n: int, memory_type: MemoryType | None = None) -> list[Memory]:
        return self.canonical.recent(namespace, n, memory_type)

    def important(self, namespace: str, n: int, memory_type: MemoryType | None = None) -> list[Memory]:
        return self.canonical.important(namespace, n, memory_type)

    def counts(self, namespace: str) -> dict[str, int]:
        return self.canonical.counts(namespace)

    def namespaces(self) -> list[str]:
        return self.canonical.namespaces()

    def change_feed_id(self) -> str:
        return self.canonical.change_feed_id()

    def change_seq(self) -> int:
        return self.canonical.change_seq()

    def changes_since(self, seq: int, limit: int = 1000) -> tuple[int, list[Change]]:
        return self.canonical.changes_since(seq, limit)

    def change_floor(self) -> int:
        return self.canonical.change_floor()

    def prune_changes(self, keep: int) -> int:
        return self.canonical.prune_changes(keep)

    def health(self) -> None:
        """The canonical store's health: without the cache the store still works."""
        self.canonical.health()

    def close(self) -> None:
        try:
            self.cache.close()
        finally:
            self.canonical.close()

    # -- internals -----------------------------------------------------------

    def _delete_begin(self, keys: list[str]) -> Callable[[], None]:
        """The delete before a canonical write: sent now, its answer awaited
        after the write (``RedisCache.delete_begin``), so Redis and the
        canonical store work at the same time. Other caches: a plain
        ``delete``, done before the write."""
        begin = getattr(self.cache, "delete_begin", None)
        if begin is not None:
            return cast(Callable[[], None], begin(keys))
        self.cache.delete(keys)
        return _done

    def _new_tokens(self, ids: list[str], gens: dict[str, str]) -> dict[str, bytes]:
        """Create fill tokens, then read them back: the token a fill uses must
        be known to be in the cache before the canonical read. (Caches with
        ``read_tagged`` do this in the same round trip as the read.)"""
        if not ids:
            return {}
        for i in ids:
            self.cache.set(gens[i], secrets.token_hex(16).encode(), 2 * self.ttl_seconds)
        back = self.cache.get_many([gens[i] for i in ids])
        return {i: back[gens[i]] for i in ids if gens[i] in back}

    def _valid(self, namespace: str, memory_id: str, raw: bytes | None, token: bytes | None) -> Memory | None:
        if raw is None or token is None or not raw.startswith(token + b" "):
            return None
        try:
            row = json.loads(raw[len(token) + 1 :])
            memory = Memory(
                id=row[0],
                namespace=row[1],
                coordinate=tuple(row[2]),
                payload=row[3],
                memory_type=MemoryType(row[4]),
                created_at=row[5],
                updated_at=row[6],
                version=row[7],
            )
        except (ValueError, IndexError, TypeError):
            return None
        if memory.namespace != namespace or memory.id != memory_id or not isinstance(memory.payload, dict):
            return None
        if self._floors:
            with self._lock:
                floor = self._floors.get((namespace, memory_id))
            if floor is not None and (memory.updated_at, memory.version) < floor:
                self._stats["refused"] += 1
                return None
        return memory

    def _set_floors(self, floors: dict[tuple[str, str], Floor]) -> None:
        with self._lock:
            for key, floor in floors.items():  # the latest write sets the floor
                self._floors.pop(key, None)
                self._floors[key] = floor
            while len(self._floors) > FLOOR_ENTRIES:
                self._floors.popitem(last=False)


def _done() -> None:
    return None


def _key(kind: str, namespace: str, memory_id: str) -> str:
    return f"kv:{kind}:{len(namespace)}:{namespace}:{memory_id}"


def _entry(token: bytes, memory: Memory) -> bytes:
    """A cached memory: its fill token, a space, the memory as a JSON array."""
    row = [
        memory.id,
        memory.namespace,
        list(memory.coordinate),
        memory.payload,
        memory.memory_type.value,
        memory.created_at,
        memory.updated_at,
        memory.version,
    ]
    return token + b" " + _JSON.encode(row).encode()


def _keys(pairs: Iterable[tuple[str, str]]) -> list[str]:
    return [_key(kind, ns, i) for ns, i in pairs for kind in ("d", "g")]


PostgresRedisHybridStore = CachedKeyValueStore
"""The production pairing: ``CachedKeyValueStore(PostgresStore(...),
RedisCache(...))``. PostgreSQL holds the truth; Redis serves repeated reads.
Redis down means slower reads, never a failed or lost write, never a stale or
deleted memory served (see the module docstring for how)."""
