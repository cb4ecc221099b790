"""Writes: store (insert or update with history), bulk store, remember, delete."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import InvalidInput, NotFound, WriteConflict
from ..models import (
    Coordinate,
    HistoryEntry,
    Memory,
    MemoryType,
    canonical_coordinate,
    memory_id,
    now,
    validate_payload,
)
from .backends import Backends
from .events import EventEmitter
from .hooks import Hooks
from .indexer import Indexer

__all__ = ["StoreService", "parse_bulk_item"]

MAX_BULK_ITEMS = 100_000
#: Reads and writes a store makes before giving up on a memory other processes
#: keep changing between its read and its write (``WriteConflict``).
WRITE_ATTEMPTS = 50
#: Stores in a row that found none of their memories after which the next
#: store writes without reading first (see ``_NewStreak``).
GUESS_NEW_AFTER = 8
#: Writes lock the memories they touch (one of this many locks per id), so
#: writes of different memories run side by side; see ``_IdLocks``.
LOCK_STRIPES = 64


def parse_bulk_item(item: Any, index: int) -> tuple[Any, Any, Any]:
    """``(coordinate, payload, memory_type)`` from a tuple or a dict item."""
    if isinstance(item, Mapping):
        if "coordinate" not in item and "coord" not in item:
            raise InvalidInput(f"items[{index}].coordinate", "is required")
        coord = item.get("coordinate", item.get("coord"))
        return coord, item.get("payload"), item.get("memory_type", item.get("type"))
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        return item[0], item[1], item[2] if len(item) == 3 else None
    raise InvalidInput(f"items[{index}]", "must be (coordinate, payload, memory_type) or a dict")


class _IdLocks:
    """Per-memory write locks, striped: a write reads the current version and
    writes the next one under the locks of its ids, so two writes of one
    memory never build the same version, while writes of different memories
    (and their round trips to the stores) overlap."""

    def __init__(self, stripes: int = LOCK_STRIPES) -> None:
        self._locks = [threading.RLock() for _ in range(stripes)]

    @contextmanager
    def hold(self, ids: Iterable[str] | None = None) -> Iterator[None]:
        """The locks of ``ids`` (all of them for ``None``), taken in one order: no deadlock."""
        n = len(self._locks)
        picked = range(n) if ids is None else sorted({hash(i) % n for i in ids})
        held: list[threading.RLock] = []
        try:
            for k in picked:
                self._locks[k].acquire()
                held.append(self._locks[k])
            yield
        finally:
            for lock in reversed(held):
                lock.release()


class _NewStreak:
    """Whether a store may skip reading its memories and write them as new.

    A store reads the current versions, then writes the next ones guarded
    (``put_many(..., expect_previous=True)``): over network backends the
    read is a round trip of its own. Agents mostly store new memories, so
    after ``GUESS_NEW_AFTER`` stores in a row found none of theirs, a store
    writes its memories as version 1 without the read; the guard refuses
    that (``WriteConflict``, nothing written) where one exists, and the
    store then reads and writes as usual, one round trip more than without
    the guess, and the streak starts again. Stores of existing memories
    thus read first, and a guess that fails costs at most one round trip
    per ``GUESS_NEW_AFTER + 1`` stores. Shared by the threads of a process
    without a lock: a race costs one guess more or less, never a write."""

    def __init__(self, after: int = GUESS_NEW_AFTER) -> None:
        self.after = after
        self.count = 0
        self.guessed = 0  # stores written without the read
        self.missed = 0  # of them, stores that found a memory after all

    def guess(self) -> bool:
        """Whether the next store writes as new without reading (counted in ``guessed``)."""
        if self.count < self.after:
            return False
        self.guessed += 1
        return True

    def found(self, existing: bool) -> None:
        """A store's memories were read (or written as new): were any there?"""
        self.count = 0 if existing else self.count + 1

    def miss(self) -> None:
        self.missed += 1
        self.count = 0


class StoreService:
    """Every write of a namespace goes through here."""

    def __init__(
        self, namespace: str, backends: Backends, indexer: Indexer, events: EventEmitter, hooks: Hooks
    ) -> None:
        self.namespace = namespace
        self.b = backends
        self.indexer = indexer
        self.events = events
        self.hooks = hooks
        self._locks = _IdLocks()
        self.new_streak = _NewStreak()

    # -- building ---------------------------------------------------------
    def _build(
        self,
        coord: Coordinate,
        payload: dict[str, Any],
        mtype: MemoryType,
        existing: Memory | None,
        at: float,
        mid: str,
    ) -> tuple[Memory, HistoryEntry]:
        payload = dict(payload)  # each attempt fills its own time: a retry must not keep the first one's
        if mtype is MemoryType.EPISODIC and payload.get("timestamp") is None:
            payload["timestamp"] = at
        ttl = payload.get("ttl_seconds")
        if ttl is not None and payload.get("expires_at") is None:
            payload["expires_at"] = at + float(ttl)
        version = existing.version + 1 if existing else 1
        memory = Memory(
            id=mid,
            namespace=self.namespace,
            coordinate=coord,
            payload=payload,
            memory_type=mtype,
            created_at=existing.created_at if existing else at,
            updated_at=at,
            version=version,
        )
        if existing:
            keys = sorted(
                k for k in set(payload) | set(existing.payload) if payload.get(k) != existing.payload.get(k)
            )
            if existing.memory_type is not mtype:
                keys.append("memory_type")
        else:
            keys = sorted(payload)
        entry = HistoryEntry(
            namespace=self.namespace,
            memory_id=mid,
            coordinate=coord,
            version=version,
            action="updated" if existing else "created",
            payload=payload,
            memory_type=mtype,
            changed_at=at,
            actor=self.b.options.actor,
            changed_keys=keys,
        )
        return memory, entry

    def _validated(
        self, items: Iterable[tuple[Any, Any, Any]], prefix: str | None
    ) -> list[tuple[Coordinate, dict[str, Any], MemoryType]]:
        out: dict[Coordinate, tuple[Coordinate, dict[str, Any], MemoryType]] = {}
        for i, (coord, payload, mtype) in enumerate(items):
            where = f"{prefix}[{i}]." if prefix else ""
            c = canonical_coordinate(coord, f"{where}coordinate")
            p = validate_payload(payload, f"{where}payload")
            t = MemoryType.parse(mtype, f"{where}memory_type")
            out[c] = (c, p, t)  # the last write to a coordinate in a batch wins
        return list(out.values())

    # -- writes -----------------------------------------------------------
    def store_many(
        self,
        items: Iterable[tuple[Any, Any, Any]],
        prefix: str | None = "items",
        wait_indexed: bool | None = None,
        expect: int | None = None,
    ) -> list[Memory]:
        """Validate everything first, then write the batch: one round trip per store.

        When indexing is left to event workers (``Options.index_synchronously``
        off), ``wait_indexed`` (default: ``Options.read_your_writes``) waits
        until they have indexed these versions, so a recall right after sees
        them; ``BackendUnavailable`` if that takes over
        ``Options.index_wait_timeout`` seconds (the write itself is done).

        ``expect``: every memory must be at this version now (0: must not
        exist); ``WriteConflict`` (nothing written) if one is not, instead of
        reading it again and writing over it."""
        clean = self._validated(items, prefix)
        if len(clean) > MAX_BULK_ITEMS:
            raise InvalidInput("items", f"at most {MAX_BULK_ITEMS} items per call")
        if not clean:
            return []
        for coord, payload, mtype in clean:
            self.hooks.fire("before_store", coordinate=coord, payload=payload, memory_type=mtype)
        ids = [memory_id(self.namespace, c) for c, _, _ in clean]
        streak = self.new_streak
        guess = expect is None and streak.guess()
        with self._locks.hold(ids), self.b.index_lock:  # see services.follower
            attempts = WRITE_ATTEMPTS + guess if expect is None else 1
            for attempt in range(1, attempts + 1):
                # never a cached copy; none at all when written as new (the guard refuses that where one is)
                as_new = expect == 0 or (guess and attempt == 1)
                existing = {} if as_new else self.b.truth.get_many(self.namespace, ids)
                if expect is not None and any(
                    (existing[i].version if i in existing else 0) != expect for i in ids
                ):
                    raise WriteConflict(f"a memory of the write is not at version {expect}")
                at = now()
                built = [
                    self._build(c, p, t, existing.get(mid), at, mid)
                    for (c, p, t), mid in zip(clean, ids, strict=True)
                ]
                memories = [m for m, _ in built]
                events = self.events.for_stored(memories)
                try:  # written only over the versions just read: another process may write too
                    self.b.kv.put_many(
                        memories, [h for _, h in built], self.events.outbox(events), expect_previous=True
                    )
                    break
                except WriteConflict:
                    if guess and attempt == 1:  # a memory was there after all: read it
                        streak.miss()
                        continue
                    if attempt == attempts:
                        raise
                    if attempt - guess >= 3:  # a busy memory: step out of the other writer's rhythm
                        time.sleep(random.uniform(0, 0.001))
            streak.found(bool(existing))
            if self.b.options.index_synchronously:
                self.indexer.index(memories)
        self.events.published(events)
        self.b.retention.wrote(len(memories))
        opts = self.b.options
        if not opts.index_synchronously and (opts.read_your_writes if wait_indexed is None else wait_indexed):
            self.indexer.wait_indexed(memories, opts.index_wait_timeout)
        for memory in memories:
            self.hooks.fire("after_store", memory=memory)
        return memories

    def store(
        self,
        coordinate: Any,
        payload: Any,
        memory_type: Any = MemoryType.EPISODIC,
        wait_indexed: bool | None = None,
    ) -> Memory:
        return self.store_many([(coordinate, payload, memory_type)], None, wait_indexed)[0]

    def free_coordinate(self, payload: Mapping[str, Any]) -> Coordinate:
        """The coordinate ``remember`` picks: three numbers in [0, 1000) from a
        hash of the namespace and the payload; while it is taken, the last
        number is increased by 1."""
        digest = hashlib.blake2b(
            (self.namespace + "\x1f" + json.dumps(payload, sort_keys=True)).encode(), digest_size=12
        ).digest()
        parts = [int.from_bytes(digest[i : i + 4], "big") % 1_000_000 / 1000.0 for i in (0, 4, 8)]
        coord = (parts[0], parts[1], parts[2])
        while self.b.kv.get_many(self.namespace, [memory_id(self.namespace, coord)]):
            coord = (coord[0], coord[1], coord[2] + 1.0)
        return coord

    def remember(
        self, payload: Any, coordinate: Any = None, memory_type: Any = MemoryType.EPISODIC
    ) -> Memory:
        clean = validate_payload(payload)
        if coordinate is not None:
            return self.store(canonical_coordinate(coordinate), clean, memory_type)
        with self._locks.hold():  # every write here waits: the coordinate found free stays free
            for _ in range(WRITE_ATTEMPTS):
                coord = self.free_coordinate(clean)
                try:
                    return self.store_many([(coord, clean, memory_type)], None, expect=0)[0]
                except WriteConflict:
                    continue  # another process took that coordinate meanwhile: the next free one
        raise WriteConflict(f"no free coordinate stayed free for {WRITE_ATTEMPTS} attempts")

    def revise(self, coordinate: Any, change: Callable[[Memory], Any]) -> Memory:
        """Store ``change(current)`` as the payload of the memory at
        ``coordinate`` (its type kept), computed from the memory as this write
        finds it: what another process writes in between is read again and
        kept, not overwritten. ``NotFound`` if there is no memory there."""
        coord = canonical_coordinate(coordinate)
        mid = memory_id(self.namespace, coord)
        for _ in range(WRITE_ATTEMPTS):
            current = self.b.truth.get_many(self.namespace, [mid]).get(mid)
            if current is None:
                raise NotFound(f"no memory at {coordinate!r} in namespace {self.namespace!r}")
            item = (coord, change(current), current.memory_type)
            try:
                return self.store_many([item], None, expect=current.version)[0]
            except WriteConflict:
                continue  # written meanwhile: change what is there now
        raise WriteConflict(f"the memory at {coordinate!r} kept changing for {WRITE_ATTEMPTS} attempts")

    def delete_many(self, coordinates: Sequence[Any]) -> list[Memory]:
        coords = [canonical_coordinate(c, f"coordinates[{i}]") for i, c in enumerate(coordinates)]
        for coord in coords:
            self.hooks.fire("before_forget", coordinate=coord)
        ids = list(dict.fromkeys(memory_id(self.namespace, c) for c in coords))
        with self._locks.hold(ids), self.b.index_lock:  # see services.follower
            existing = self.b.truth.get_many(self.namespace, ids)
            if not existing:
                return []
            at = now()
            gone = list(existing.values())
            history = [
                HistoryEntry(
                    namespace=self.namespace,
                    memory_id=m.id,
                    coordinate=m.coordinate,
                    version=m.version + 1,
                    action="deleted",
                    payload=None,
                    memory_type=m.memory_type,
                    changed_at=at,
                    actor=self.b.options.actor,
                    changed_keys=[],
                )
                for m in gone
            ]
            events = self.events.for_deleted(gone, at)
            deleted = set(
                self.b.kv.delete_many(
                    self.namespace, [m.id for m in gone], history, self.events.outbox(events)
                )
            )
            gone = [m for m in gone if m.id in deleted]
            self.b.graph.remove_nodes(self.namespace, [m.id for m in gone])
            if self.b.options.index_synchronously:  # else the event workers unindex
                self.indexer.unindex(self.namespace, [m.id for m in gone])
        self.events.published(events, deleted)
        self.b.retention.wrote(len(gone))
        for memory in gone:
            self.hooks.fire("after_forget", memory=memory)
        return gone
