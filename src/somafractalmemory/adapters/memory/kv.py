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

Memories, history entries and changes are held as tuples of plain values
(the memory type as its code; payloads in dicts beside them, by id or
position), not as ``Memory``/``HistoryEntry``/``Change`` objects: CPython's
cyclic garbage collector stops tracking such tuples after one look, so a
store of 100k memories adds almost nothing to every full collection (as
objects they added ~500k, and collecting them took a quarter of the
bulk-store time).

The change feed is a list of changes in this process (one per memory
written or deleted); its cursor is the list's length.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ...errors import InvalidInput, WriteConflict
from ...interfaces.storage import Change, Filters
from ...models import MAX_DIMS, Coordinate, HistoryEntry, Memory, MemoryEvent, MemoryType, matches_filters
from ._util import check_box, copy_json, top_n

__all__ = ["InMemoryKeyValueStore"]

_TYPE_CODE = {MemoryType.EPISODIC: 1, MemoryType.SEMANTIC: 2}
_TYPE_OF = {code: kind for kind, code in _TYPE_CODE.items()}

#: ``(id, namespace, coordinate, type code, created_at, updated_at, version)``
_Row = tuple[str, str, Coordinate, int, float, float, int]
#: ``(namespace, memory_id, coordinate, version, action, type code or 0,
#: changed_at, actor, changed_keys)``
_HistoryRow = tuple[str, str, Coordinate, int, str, int, float, str, tuple[str, ...]]
_ID: Final = 0
_NAMESPACE: Final = 1
_COORD: Final = 2
_KIND: Final = 3
_CREATED: Final = 4
_UPDATED: Final = 5
_VERSION: Final = 6
_H_CHANGED_AT: Final = 6  # in a ``_HistoryRow``


def _row(m: Memory) -> _Row:
    return (m.id, m.namespace, tuple(m.coordinate), _TYPE_CODE[m.memory_type], m.created_at, m.updated_at,
            m.version)  # fmt: skip


def _memory(r: _Row, payload: dict[str, Any]) -> Memory:
    """A fresh ``Memory`` from a stored row and payload (copied)."""
    return Memory(r[0], r[1], r[2], copy_json(payload), _TYPE_OF[r[3]], r[4], r[5], r[6])


def _history_row(h: HistoryEntry) -> _HistoryRow:
    kind = 0 if h.memory_type is None else _TYPE_CODE[h.memory_type]
    return (h.namespace, h.memory_id, tuple(h.coordinate), h.version, h.action, kind, h.changed_at, h.actor,
            tuple(h.changed_keys))  # fmt: skip


def _entry(r: _HistoryRow, payload: dict[str, Any] | None) -> HistoryEntry:
    """A fresh ``HistoryEntry`` from a stored row and payload (copied)."""
    return HistoryEntry(
        r[0], r[1], r[2], r[3], r[4], copy_json(payload), _TYPE_OF.get(r[5]), r[6], r[7], list(r[8])
    )


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


def _copied(payload: dict[str, Any] | None, copies: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """The copy of ``payload`` already made (by ``id``), else a new one."""
    found = copies.get(id(payload))
    return copy_json(payload) if found is None else found


class _Table:
    """The memories of one namespace plus their columnar index."""

    def __init__(self, capacity: int = 64) -> None:
        self.memories: dict[str, _Row] = {}
        self.payloads: dict[str, dict[str, Any]] = {}
        self.slot_of: dict[str, int] = {}
        self.ids: list[str] = []
        self.free: list[int] = []
        self.points: dict[int, _Points] = {}
        self.ndim = np.zeros(capacity, dtype=np.int8)  # 0 marks a free slot
        self.kind = np.zeros(capacity, dtype=np.int8)
        self.updated = np.zeros(capacity, dtype=np.float64)
        self.importance = np.zeros(capacity, dtype=np.float64)
        self.history: list[_HistoryRow] = []
        self.history_payloads: list[dict[str, Any] | None] = []  # beside ``history``
        self.history_of: dict[str, tuple[int, ...]] = {}  # positions in ``history``

    def _grow(self) -> None:
        size = len(self.ndim) * 2
        for name in ("ndim", "kind", "updated", "importance"):
            old = getattr(self, name)
            new = np.zeros(size, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def memory(self, memory_id: str) -> Memory:
        return _memory(self.memories[memory_id], self.payloads[memory_id])

    def history_entry(self, position: int) -> HistoryEntry:
        return _entry(self.history[position], self.history_payloads[position])

    def put(self, row: _Row, payload: dict[str, Any], importance: float) -> None:
        memory_id, coordinate = row[_ID], row[_COORD]
        slot = self.slot_of.get(memory_id)
        if slot is None:
            if self.free:
                slot = self.free.pop()
                self.ids[slot] = memory_id
            else:
                slot = len(self.ids)
                if slot == len(self.ndim):
                    self._grow()
                self.ids.append(memory_id)
            self.slot_of[memory_id] = slot
        n = len(coordinate)
        old = int(self.ndim[slot])
        if old and old != n:
            self.points[old].remove(slot)
        points = self.points.get(n)
        if points is None:
            points = self.points[n] = _Points(n)
        points.put(slot, coordinate)
        self.ndim[slot] = n
        self.kind[slot] = row[_KIND]
        self.updated[slot] = row[_UPDATED]
        self.importance[slot] = importance
        self.memories[memory_id] = row
        self.payloads[memory_id] = payload

    def delete(self, memory_id: str) -> bool:
        slot = self.slot_of.pop(memory_id, None)
        if slot is None:
            return False
        del self.memories[memory_id]
        del self.payloads[memory_id]
        self.points[int(self.ndim[slot])].remove(slot)
        self.ndim[slot] = 0
        self.kind[slot] = 0
        self.ids[slot] = ""
        self.free.append(slot)
        return True

    def add_history(self, entry: _HistoryRow, payload: dict[str, Any] | None) -> None:
        self.history_of[entry[1]] = (*self.history_of.get(entry[1], ()), len(self.history))
        self.history.append(entry)
        self.history_payloads.append(payload)

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
        self._changes: list[tuple[int, str, str, int, str]] = []  # Change fields, after the floor
        self._floor = 0  # the seq of the last change pruned
        self._feed_id = uuid.uuid4().hex

    def _record(self, namespace: str, memory_id: str, version: int, action: str) -> None:
        self._changes.append((self._floor + len(self._changes) + 1, namespace, memory_id, version, action))

    def _table(self, namespace: str) -> _Table:
        table = self._tables.get(namespace)
        if table is None:
            table = self._tables[namespace] = _Table()
        return table

    def put_many(
        self,
        memories: Sequence[Memory],
        history: Sequence[HistoryEntry],
        events: Sequence[MemoryEvent] = (),
        expect_previous: bool = False,
    ) -> None:
        # Check and copy first, then apply: nothing can fail half-way.
        for m in memories:
            if m.memory_type not in _TYPE_CODE or not 1 <= len(m.coordinate) <= MAX_DIMS:
                raise InvalidInput("memories", f"memory {m.id} has no valid type or coordinate")
        new = [(_row(m), copy_json(m.payload), m.importance) for m in memories]
        # A history entry that carries its memory's payload shares the stored
        # copy (neither is ever handed out without being copied again).
        copies = {id(m.payload): payload for m, (_, payload, _) in zip(memories, new, strict=True)}
        entries = [(_history_row(h), _copied(h.payload, copies)) for h in history]
        with self._lock:
            if expect_previous:
                self._check_previous(memories)
            for row, payload, importance in new:
                table = self._table(row[_NAMESPACE])
                action = "updated" if row[_ID] in table.memories else "created"
                self._record(row[_NAMESPACE], row[_ID], row[_VERSION], action)
                table.put(row, payload, importance)
            for h, payload in entries:
                self._table(h[0]).add_history(h, payload)

    def _check_previous(self, memories: Sequence[Memory]) -> None:
        """``put_many``'s ``expect_previous`` (under the lock)."""
        for m in {(m.namespace, m.id): m for m in memories}.values():  # the last of an id counts
            table = self._tables.get(m.namespace)
            row = table.memories.get(m.id) if table is not None else None
            stored = row[_VERSION] if row is not None else 0
            if stored != m.version - 1:
                raise WriteConflict(f"memory {m.id} is at version {stored}, not {m.version - 1}")

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Memory]:
        with self._lock:
            table = self._tables.get(namespace)
            if table is None:
                return {}
            found = [(table.memories[i], table.payloads[i]) for i in ids if i in table.memories]
        return {r[_ID]: _memory(r, payload) for r, payload in found}

    def delete_many(
        self,
        namespace: str,
        ids: Sequence[str],
        history: Sequence[HistoryEntry],
        events: Sequence[MemoryEvent] = (),
    ) -> list[str]:
        entries = [(_history_row(h), copy_json(h.payload)) for h in history]
        with self._lock:
            table = self._table(namespace)
            versions = {i: table.memories[i][_VERSION] for i in ids if i in table.memories}
            deleted = [i for i in dict.fromkeys(ids) if table.delete(i)]
            for i in deleted:
                self._record(namespace, i, versions[i], "deleted")
            for h, payload in entries:
                self._table(h[0]).add_history(h, payload)
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
            code = None if memory_type is None else _TYPE_CODE[memory_type]
            order = sorted((r[_CREATED], r[_ID]) for r in table.memories.values() if code in (None, r[_KIND]))
        step = max(1, page_size)
        for start in range(0, len(order), step):
            with self._lock:
                copies = [table.memory(i) for _, i in order[start : start + step] if i in table.memories]
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
            found = sorted((table.memories[table.ids[s]] for s in slots), key=lambda r: r[_COORD])
            return [table.memory(r[_ID]) for r in found]

    def filter_ids(
        self, namespace: str, filters: Filters | None, memory_type: MemoryType | None = None
    ) -> set[str]:
        with self._lock:
            table = self._tables.get(namespace)
            if table is None:
                return set()
            code = None if memory_type is None else _TYPE_CODE[memory_type]
            return {
                r[_ID]
                for r in table.memories.values()
                if code in (None, r[_KIND]) and matches_filters(table.payloads[r[_ID]], filters)
            }

    def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        with self._lock:
            table = self._tables.get(namespace)
            if table is None:
                return []
            entries = [table.history_entry(i) for i in table.history_of.get(memory_id, ())]
        entries.sort(key=lambda h: h.changed_at)  # stable: insertion order breaks ties
        return entries

    def iter_history(self, namespace: str) -> Iterator[HistoryEntry]:
        with self._lock:
            table = self._tables.get(namespace)
            if table is None:
                return
            order = sorted(range(len(table.history)), key=lambda i: table.history[i][_H_CHANGED_AT])
        for start in range(0, len(order), 500):
            with self._lock:
                page = [table.history_entry(i) for i in order[start : start + 500]]
            yield from page

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
            return [table.memory(table.ids[s]) for s in chosen]

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
        return self._floor + len(self._changes)

    def changes_since(self, seq: int, limit: int = 1000) -> tuple[int, list[Change]]:
        with self._lock:
            start = max(0, int(seq) - self._floor)
            found = [Change(*c) for c in self._changes[start : start + max(1, int(limit))]]
        return (found[-1].seq if found else int(seq)), found

    def change_floor(self) -> int:
        return self._floor

    def prune_changes(self, keep: int) -> int:
        with self._lock:
            drop = max(0, len(self._changes) - max(1, int(keep)))
            if drop:
                self._floor = self._changes[drop - 1][0]
                del self._changes[:drop]
            return drop

    def health(self) -> None:
        return None

    def close(self) -> None:
        return None
