"""In-process canonical store (``IKeyValueStore``), for tests and ``MemoryMode.TEST``.

Each namespace keeps its memories in a dict and, beside it, a columnar numpy
index with one row ("slot") per memory: its number of dimensions, memory
type, ``updated_at`` and importance, which ``recent`` and ``important``
rank vectorised (freed slots are reused). Coordinates are packed per
``(namespace, ndim)`` in a dense ``(count, ndim)`` float64 array, so a range
query is one vectorised box test over the memories of that dimensionality
(never a walk over payloads).

Stored and returned memories are copies, so a caller mutating a payload
never changes the store. All methods are thread-safe (one lock).

The change feed is a list of ``Change``s in this process (one per memory
written or deleted); its cursor is the list's length.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from ...errors import InvalidInput
from ...interfaces.storage import Change, Filters
from ...models import MAX_DIMS, Coordinate, HistoryEntry, Memory, MemoryEvent, MemoryType, matches_filters
from ._util import check_box, clone_history, clone_memory, top_n

__all__ = ["InMemoryKeyValueStore"]

_TYPE_CODE = {MemoryType.EPISODIC: 1, MemoryType.SEMANTIC: 2}


class _Points:
    """The coordinates of one dimensionality, packed column-wise: ``coords[d, r]``
    is dimension ``d`` of the memory in slot ``slots[r]``."""

    def __init__(self, ndim: int) -> None:
        self.coords = np.zeros((ndim, 16), dtype=np.float64)
        self.slots = np.zeros(16, dtype=np.int64)
        self.row_of: dict[int, int] = {}

    def put(self, slot: int, coord: Coordinate) -> None:
        row = self.row_of.get(slot)
        if row is None:
            row = self.row_of[slot] = len(self.row_of)
            if row == len(self.slots):
                self.coords = np.concatenate([self.coords, np.zeros_like(self.coords)], axis=1)
                self.slots = np.concatenate([self.slots, np.zeros_like(self.slots)])
            self.slots[row] = slot
        self.coords[:, row] = coord

    def remove(self, slot: int) -> None:
        row = self.row_of.pop(slot)
        last = len(self.row_of)  # index of the last row before the removal
        if row != last:  # move the last row into the hole
            moved = int(self.slots[last])
            self.coords[:, row] = self.coords[:, last]
            self.slots[row] = moved
            self.row_of[moved] = row

    def within(self, lo: Coordinate, hi: Coordinate) -> npt.NDArray[np.int64]:
        """Slots inside the inclusive box: a scan of the first dimension, then
        each further dimension is tested on the remaining rows only."""
        first = self.coords[0, : len(self.row_of)]
        rows = np.flatnonzero((first >= lo[0]) & (first <= hi[0]))
        for d in range(1, len(lo)):
            column = self.coords[d, rows]
            rows = rows[(column >= lo[d]) & (column <= hi[d])]
        found: npt.NDArray[np.int64] = self.slots[rows]
        return found


class _Table:
    """The memories of one namespace plus their columnar index."""

    def __init__(self, capacity: int = 64) -> None:
        self.memories: dict[str, Memory] = {}
        self.slot_of: dict[str, int] = {}
        self.ids: list[str] = []
        self.free: list[int] = []
        self.points: dict[int, _Points] = {}
        self.ndim = np.zeros(capacity, dtype=np.int8)  # 0 marks a free slot
        self.kind = np.zeros(capacity, dtype=np.int8)
        self.updated = np.zeros(capacity, dtype=np.float64)
        self.importance = np.zeros(capacity, dtype=np.float64)
        self.history: list[HistoryEntry] = []
        self.history_of: dict[str, list[HistoryEntry]] = {}

    def _grow(self) -> None:
        size = len(self.ndim) * 2
        for name in ("ndim", "kind", "updated", "importance"):
            old = getattr(self, name)
            new = np.zeros(size, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def put(self, m: Memory) -> None:
        slot = self.slot_of.get(m.id)
        if slot is None:
            if self.free:
                slot = self.free.pop()
                self.ids[slot] = m.id
            else:
                slot = len(self.ids)
                if slot == len(self.ndim):
                    self._grow()
                self.ids.append(m.id)
            self.slot_of[m.id] = slot
        n = len(m.coordinate)
        old = int(self.ndim[slot])
        if old and old != n:
            self.points[old].remove(slot)
        points = self.points.get(n)
        if points is None:
            points = self.points[n] = _Points(n)
        points.put(slot, m.coordinate)
        self.ndim[slot] = n
        self.kind[slot] = _TYPE_CODE[m.memory_type]
        self.updated[slot] = m.updated_at
        self.importance[slot] = m.importance
        self.memories[m.id] = m

    def delete(self, memory_id: str) -> bool:
        slot = self.slot_of.pop(memory_id, None)
        if slot is None:
            return False
        del self.memories[memory_id]
        self.points[int(self.ndim[slot])].remove(slot)
        self.ndim[slot] = 0
        self.kind[slot] = 0
        self.ids[slot] = ""
        self.free.append(slot)
        return True

    def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        for entry in entries:
            self.history.append(entry)
            self.history_of.setdefault(entry.memory_id, []).append(entry)

    def live(self, memory_type: MemoryType | None) -> npt.NDArray[np.bool_]:
        size = len(self.ids)
        live: npt.NDArray[np.bool_] = (
            self.ndim[:size] > 0 if memory_type is None else self.kind[:size] == _TYPE_CODE[memory_type]
        )
        return live


class InMemoryKeyValueStore:
    """``IKeyValueStore`` kept in process memory (lost when the process ends)."""

    name = "memory"

    def __init__(self) -> None:
        self._tables: dict[str, _Table] = {}
        self._lock = threading.RLock()
        self._changes: list[Change] = []
        self._feed_id = uuid.uuid4().hex

    def _record(self, namespace: str, memory_id: str, version: int, action: str) -> None:
        self._changes.append(Change(len(self._changes) + 1, namespace, memory_id, version, action))

    def _table(self, namespace: str) -> _Table:
        table = self._tables.get(namespace)
        if table is None:
            table = self._tables[namespace] = _Table()
        return table

    def put_many(
        self, memories: Sequence[Memory], history: Sequence[HistoryEntry], events: Sequence[MemoryEvent] = ()
    ) -> None:
        # Copy and check first, then apply: nothing can fail half-way.
        new = [clone_memory(m) for m in memories]
        for m in new:
            if m.memory_type not in _TYPE_CODE or not 1 <= len(m.coordinate) <= MAX_DIMS:
                raise InvalidInput("memories", f"memory {m.id} has no valid type or coordinate")
        # A history entry that carries its memory's payload shares the stored
        # copy (neither is ever handed out without being cloned again).
        copies = {id(m.payload): c.payload for m, c in zip(memories, new, strict=True)}
        entries = [clone_history(h, copies.get(id(h.payload))) for h in history]
        with self._lock:
            for m in new:
                table = self._table(m.namespace)
                self._record(m.namespace, m.id, m.version, "updated" if m.id in table.memories else "created")
                table.put(m)
            for h in entries:
                self._table(h.namespace).add_history([h])

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Memory]:
        with self._lock:
            table = self._tables.get(namespace)
            if table is None:
                return {}
            found = [table.memories[i] for i in ids if i in table.memories]
        return {m.id: clone_memory(m) for m in found}

    def delete_many(
        self,
        namespace: str,
        ids: Sequence[str],
        history: Sequence[HistoryEntry],
        events: Sequence[MemoryEvent] = (),
    ) -> list[str]:
        entries = [clone_history(h) for h in history]
        with self._lock:
            table = self._table(namespace)
            versions = {i: table.memories[i].version for i in ids if i in table.memories}
            deleted = [i for i in dict.fromkeys(ids) if table.delete(i)]
            for i in deleted:
                self._record(namespace, i, versions[i], "deleted")
            for h in entries:
                self._table(h.namespace).add_history([h])
            if not table.memories and not table.history:
                del self._tables[namespace]
        return deleted

    def iter_memories(
        self, namespace: str, memory_type: MemoryType | None = None, page_size: int = 500
    ) -> Iterator[Memory]:
        with self._lock:
            table = self._tables.get(namespace)
            if table is None:
                return
            order = sorted(
                (m.created_at, m.id)
                for m in table.memories.values()
                if memory_type is None or m.memory_type is memory_type
            )
        step = max(1, page_size)
        for start in range(0, len(order), step):
            with self._lock:
                page = [table.memories.get(i) for _, i in order[start : start + step]]
                copies = [clone_memory(m) for m in page if m is not None]
            yield from copies

    def find_range(
        self, namespace: str, lo: Coordinate, hi: Coordinate, memory_type: MemoryType | None = None
    ) -> list[Memory]:
        n = check_box(lo, hi)
        with self._lock:
            table = self._tables.get(namespace)
            if table is None:
                return []
            points = table.points.get(n)
            slots = points.within(lo, hi) if points is not None else np.zeros(0, dtype=np.int64)
            if memory_type is not None:
                slots = slots[table.kind[slots] == _TYPE_CODE[memory_type]]
            found = [table.memories[table.ids[s]] for s in slots]
            found.sort(key=lambda m: m.coordinate)
            return [clone_memory(m) for m in found]

    def filter_ids(
        self, namespace: str, filters: Filters | None, memory_type: MemoryType | None = None
    ) -> set[str]:
        with self._lock:
            table = self._tables.get(namespace)
            if table is None:
                return set()
            return {
                m.id
                for m in table.memories.values()
                if (memory_type is None or m.memory_type is memory_type)
                and matches_filters(m.payload, filters)
            }

    def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        with self._lock:
            table = self._tables.get(namespace)
            entries = list(table.history_of.get(memory_id, [])) if table else []
        entries.sort(key=lambda h: h.changed_at)  # stable: insertion order breaks ties
        return [clone_history(h) for h in entries]

    def iter_history(self, namespace: str) -> Iterator[HistoryEntry]:
        with self._lock:
            table = self._tables.get(namespace)
            entries = list(table.history) if table else []
        entries.sort(key=lambda h: h.changed_at)
        for h in entries:
            yield clone_history(h)

    def _top(
        self, namespace: str, n: int, memory_type: MemoryType | None, by_importance: bool
    ) -> list[Memory]:
        with self._lock:
            table = self._tables.get(namespace)
            if table is None or n <= 0:
                return []
            slots = np.flatnonzero(table.live(memory_type))
            keys = [table.importance, table.updated] if by_importance else [table.updated]
            chosen = top_n(slots, keys, table.ids, n)
            return [clone_memory(table.memories[table.ids[s]]) for s in chosen]

    def recent(self, namespace: str, n: int, memory_type: MemoryType | None = None) -> list[Memory]:
        """Newest ``updated_at`` first; ties by id."""
        return self._top(namespace, n, memory_type, by_importance=False)

    def important(self, namespace: str, n: int, memory_type: MemoryType | None = None) -> list[Memory]:
        """Highest importance first; ties: newest ``updated_at``, then id."""
        return self._top(namespace, n, memory_type, by_importance=True)

    def counts(self, namespace: str) -> dict[str, int]:
        with self._lock:
            table = self._tables.get(namespace)
            if table is None:
                return {"total": 0, "episodic": 0, "semantic": 0}
            size = len(table.ids)
            episodic = int(np.count_nonzero(table.kind[:size] == _TYPE_CODE[MemoryType.EPISODIC]))
            semantic = int(np.count_nonzero(table.kind[:size] == _TYPE_CODE[MemoryType.SEMANTIC]))
        return {"total": episodic + semantic, "episodic": episodic, "semantic": semantic}

    def namespaces(self) -> list[str]:
        with self._lock:
            return sorted(ns for ns, table in self._tables.items() if table.memories)

    def change_feed_id(self) -> str:
        return self._feed_id

    def change_seq(self) -> int:
        return len(self._changes)

    def changes_since(self, seq: int, limit: int = 1000) -> tuple[int, list[Change]]:
        with self._lock:
            start = max(0, int(seq))
            found = self._changes[start : start + max(1, int(limit))]
        return (found[-1].seq if found else int(seq)), found

    def health(self) -> None:
        return None

    def close(self) -> None:
        return None
