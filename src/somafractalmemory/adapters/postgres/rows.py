"""Rows in and out: how memories and history entries travel to PostgreSQL
(JSON text, one array of flat objects per statement) and come back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...errors import InvalidInput
from ...models import MAX_DIMS, HistoryEntry, Memory, MemoryType

__all__ = ["Encoder", "chunks", "coordinate_text", "dumps", "history_from_row", "memory_from_row"]


#: Built once: ``json.dumps`` with options builds an encoder on every call.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_TYPE_VALUES = {t: t.value for t in MemoryType}


def dumps(value: Any) -> str:
    """Compact JSON text; ``InvalidInput`` for what JSON cannot hold."""
    try:
        return _JSON.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("payload", f"is not JSON: {exc}") from None


def coordinate_text(coord: Sequence[float], field: str) -> str:
    """The ``float8[]`` literal of a coordinate of 1..16 finite numbers (exact: ``repr``)."""
    if not 1 <= len(coord) <= MAX_DIMS:
        raise InvalidInput(field, f"must have 1 to {MAX_DIMS} values, got {len(coord)}")
    text = "{" + ",".join([repr(float(c)) for c in coord]) + "}"
    if "n" in text:  # 'nan' or 'inf': finite floats print with digits, '.', 'e' and signs only
        raise InvalidInput(field, f"values must be finite, got {tuple(coord)!r}")
    return text


class Encoder:
    """Rows of a batch as JSON text. A payload object shared by a memory and
    its history entry, or a repeated coordinate, is encoded once."""

    def __init__(self) -> None:
        self._payloads: dict[int, tuple[Any, str]] = {}
        self._coords: dict[tuple[float, ...], str] = {}

    def payload(self, value: Any) -> str:
        hit = self._payloads.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        text = dumps(value)
        self._payloads[id(value)] = (value, text)  # keeps ``value`` alive, so its id stays unique
        return text

    def coordinate(self, coord: Sequence[float], field: str) -> str:
        key = tuple(coord)
        text = self._coords.get(key)
        if text is None:
            text = self._coords[key] = coordinate_text(coord, field)
        return text

    def memories(self, batch: Sequence[Memory]) -> str:
        return dumps(
            [
                {
                    "namespace": m.namespace,
                    "id": m.id,
                    "coordinate": self.coordinate(m.coordinate, "memory.coordinate"),
                    "payload": self.payload(m.payload),
                    "memory_type": _TYPE_VALUES.get(m.memory_type) or MemoryType(m.memory_type).value,
                    "created_at": m.created_at,
                    "updated_at": m.updated_at,
                    "version": m.version,
                    "importance": m.importance,
                }
                for m in batch
            ]
        )

    def history(self, history: Sequence[HistoryEntry]) -> str:
        return dumps(
            [
                {
                    "namespace": h.namespace,
                    "memory_id": h.memory_id,
                    "coordinate": self.coordinate(h.coordinate, "history.coordinate"),
                    "version": h.version,
                    "action": h.action,
                    "payload": None if h.payload is None else self.payload(h.payload),
                    "memory_type": None
                    if h.memory_type is None
                    else _TYPE_VALUES.get(h.memory_type) or MemoryType(h.memory_type).value,
                    "changed_at": h.changed_at,
                    "actor": h.actor,
                    "changed_keys": list(h.changed_keys),
                }
                for h in history
            ]
        )


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


_TYPES = {t.value: t for t in MemoryType}


def memory_from_row(row: Sequence[Any]) -> Memory:
    return Memory(
        id=row[1],
        namespace=row[0],
        coordinate=tuple(row[2]),
        payload=row[3],
        memory_type=_TYPES[row[4]],
        created_at=row[5],
        updated_at=row[6],
        version=row[7],
    )


def history_from_row(row: Sequence[Any]) -> HistoryEntry:
    return HistoryEntry(
        namespace=row[0],
        memory_id=row[1],
        coordinate=tuple(row[2]),
        version=row[3],
        action=row[4],
        payload=row[5],
        memory_type=MemoryType(row[6]) if row[6] is not None else None,
        changed_at=row[7],
        actor=row[8],
        changed_keys=list(row[9]),
    )
