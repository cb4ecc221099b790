"""Domain model: coordinates, memory ids, memories, links, history, events.

Validation of user input happens here, once; everything downstream receives
canonical values. See ``docs/CONCEPTS.md`` for the rules in prose.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import InvalidInput, PayloadTooLarge

__all__ = [
    "MAX_DIMS",
    "MAX_PAYLOAD_BYTES",
    "TEXT_KEYS",
    "Coordinate",
    "HistoryEntry",
    "Link",
    "Memory",
    "MemoryEvent",
    "MemoryType",
    "RecallHit",
    "ScoreParts",
    "canonical_coordinate",
    "format_coordinate",
    "importance_norm",
    "indexed_text",
    "matches_filters",
    "memory_id",
    "validate_payload",
]

Coordinate = tuple[float, ...]

MAX_DIMS = 16
MAX_PAYLOAD_BYTES = 1_048_576
MAX_KEY_LENGTH = 256
MAX_DEPTH = 32
#: Payload keys whose string values are embedded first, in this order.
TEXT_KEYS = ("text", "task", "fact", "content")
#: Reserved keys that are metadata, never indexed text.
NON_TEXT_KEYS = frozenset(
    {"timestamp", "expires_at", "ttl_seconds", "importance", "memory_type", "coordinate"}
)
_ID_NAMESPACE = uuid.UUID("5f6d2a8e-3c1b-5a7e-9d4f-0b8c6e2a1f37")
_ID_PREFIX = _ID_NAMESPACE.bytes
#: A flat payload whose (12 bytes per character) upper bound of its JSON size
#: stays under this skips encoding; bigger ones are measured exactly.
_FAST_SIZE_BOUND = MAX_PAYLOAD_BYTES // 2


class MemoryType(StrEnum):
    """What kind of memory: something that happened, or a fact."""

    EPISODIC = "episodic"
    SEMANTIC = "semantic"

    @classmethod
    def parse(cls, value: MemoryType | str | None, field_name: str = "memory_type") -> MemoryType:
        if value is None:
            return cls.EPISODIC
        if isinstance(value, MemoryType):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        raise InvalidInput(field_name, f"must be 'episodic' or 'semantic', got {value!r}")

    @classmethod
    def parse_optional(
        cls, value: MemoryType | str | None, field_name: str = "memory_type"
    ) -> MemoryType | None:
        """``parse``, but ``None`` stays ``None`` (meaning: any type)."""
        return None if value is None else cls.parse(value, field_name)


def canonical_coordinate(value: Any, field_name: str = "coordinate") -> Coordinate:
    """Return the canonical form of a coordinate.

    Accepts a sequence of numbers or the text form ``"1,2,3"``. Every number
    becomes a float, ``-0.0`` becomes ``0.0``; 1..16 finite values are required.
    """
    fast = _plain_coordinate(value)
    if fast is not None:
        return fast
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if not value.strip() or any(p == "" for p in parts):
            raise InvalidInput(field_name, f"expected comma-separated numbers like '1,2,3', got {value!r}")
        raw: Sequence[Any] = parts
    elif isinstance(value, (list, tuple)):
        raw = value
    else:
        raise InvalidInput(
            field_name, f"expected a list of numbers or 'x,y,z' text, got {type(value).__name__}"
        )
    if not 1 <= len(raw) <= MAX_DIMS:
        raise InvalidInput(field_name, f"must have 1 to {MAX_DIMS} values, got {len(raw)}")
    out = []
    for item in raw:
        if isinstance(item, bool) or not isinstance(item, (int, float, str)):
            raise InvalidInput(field_name, f"values must be numbers, got {item!r}")
        try:
            number = float(item)
        except (ValueError, OverflowError):
            raise InvalidInput(field_name, f"values must be numbers, got {item!r}") from None
        if not math.isfinite(number):
            raise InvalidInput(field_name, f"values must be finite, got {item!r}")
        out.append(number + 0.0)  # -0.0 + 0.0 == 0.0
    return tuple(out)


def _plain_coordinate(value: Any) -> Coordinate | None:
    """The canonical form of a list or tuple of 1..16 finite plain ints and
    floats, or None when ``value`` needs the full checks (and their errors)."""
    if type(value) not in (tuple, list) or not 1 <= len(value) <= MAX_DIMS:
        return None
    for item in value:
        kind = type(item)
        if kind is not float and (kind is not int or not -(2**53) <= item <= 2**53):
            return None
    out = tuple([float(item) + 0.0 for item in value])  # -0.0 + 0.0 == 0.0
    return out if all(map(math.isfinite, out)) else None


def format_coordinate(coord: Coordinate) -> str:
    """Text form of a canonical coordinate (``"1.0,2.0,3.0"``)."""
    return ",".join(map(repr, coord))


def memory_id(namespace: str, coord: Coordinate) -> str:
    """Deterministic id of the memory at ``coord`` in ``namespace``: the UUIDv5
    of ``namespace + "\\x1f" + format_coordinate(coord)`` in a fixed UUID
    namespace (computed here as RFC 4122 does, without ``uuid.UUID`` objects)."""
    name = f"{namespace}\x1f{format_coordinate(coord)}".encode()
    return _uuid_text(hashlib.sha1(_ID_PREFIX + name, usedforsecurity=False).digest(), 5)


def new_event_id() -> str:
    """A random UUID (version 4) as text, like ``str(uuid.uuid4())``."""
    return _uuid_text(os.urandom(16), 4)


def _uuid_text(digest: bytes, version: int) -> str:
    """The RFC 4122 text form of the first 16 bytes of ``digest`` with the
    version and variant bits set."""
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | (version << 4)
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def validate_namespace(namespace: Any) -> str:
    if not isinstance(namespace, str) or not namespace or len(namespace) > 128:
        raise InvalidInput("namespace", "must be a non-empty string of at most 128 characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in namespace) or "/" in namespace:
        raise InvalidInput("namespace", "must not contain whitespace, control characters or '/'")
    return namespace


def importance_norm(importance: float) -> float:
    """Map importance (>= 0) monotonically into (0, 1): ``(1 + i) / (2 + i)``.

    0 -> 0.5, 1 (the default) -> 0.667, 5 -> 0.857, 100 -> 0.990.
    """
    i = max(0.0, float(importance))
    return (1.0 + i) / (2.0 + i)


def _check_json(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(path, f"nesting deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(path, "strings must not contain the NUL character")
        return
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(path, "numbers must be finite (no NaN or infinity)")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(path, f"object keys must be strings, got {key!r}")
            if "\x00" in key:
                raise InvalidInput(path, "keys must not contain the NUL character")
            if len(key) > MAX_KEY_LENGTH:
                raise InvalidInput(path, f"key longer than {MAX_KEY_LENGTH} characters")
            _check_json(item, f"{path}.{key}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]", depth + 1)
        return
    raise InvalidInput(path, f"value of type {type(value).__name__} is not JSON")


def _plain_scalar(value: Any) -> int:
    """An upper bound of the JSON size of a plain ``str``/``int``/``float``/
    ``bool``/``None`` that needs no further checks, else -1."""
    kind = type(value)
    if kind is str:
        return -1 if "\x00" in value else 12 * len(value) + 2
    if kind is int:
        return 24 if -(2**63) <= value < 2**63 else -1
    if kind is float:
        return 32 if math.isfinite(value) else -1
    return 5 if kind is bool or value is None else -1


def _flat_payload(payload: Any) -> dict[str, Any] | None:
    """The fast path of ``validate_payload``: a ``dict`` whose values are plain
    scalars or lists of plain scalars, with plain keys, and small enough, comes
    back as a copy that equals its JSON round trip. Anything else (including
    every invalid payload) returns None and gets the full checks."""
    if type(payload) is not dict:
        return None
    bound = 2
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if type(key) is not str or len(key) > MAX_KEY_LENGTH or "\x00" in key:
            return None
        if type(value) is list:
            for item in value:
                size = _plain_scalar(item)
                if size < 0:
                    return None
                bound += size + 1
            value = list(value)
        else:
            size = _plain_scalar(value)
            if size < 0:
                return None
            bound += size
        bound += 12 * len(key) + 4
        out[key] = value
    if bound > _FAST_SIZE_BOUND or _metadata_problem(out) is not None:
        return None
    return out


def _metadata_problem(clean: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(key, message)`` for the first reserved key of a JSON-clean payload
    whose value has a type or range it may not have, else None."""
    if "importance" in clean:
        imp = clean["importance"]
        if isinstance(imp, bool) or not isinstance(imp, (int, float)) or imp < 0:
            return "importance", "must be a number >= 0"
    for key in ("timestamp", "expires_at", "ttl_seconds"):
        val = clean.get(key)
        if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0):
            return key, "must be a number of seconds >= 0"
    if "tags" in clean and not (
        isinstance(clean["tags"], list) and all(isinstance(t, str) for t in clean["tags"])
    ):
        return "tags", "must be a list of strings"
    return None


def validate_payload(payload: Any, field_name: str = "payload") -> dict[str, Any]:
    """Check a payload and return a JSON-clean copy; raises ``InvalidInput``."""
    fast = _flat_payload(payload)
    if fast is not None:
        return fast
    if not isinstance(payload, Mapping):
        raise InvalidInput(field_name, f"must be a JSON object, got {type(payload).__name__}")
    _check_json(payload, field_name, 0)
    encoded = json.dumps(payload, separators=(",", ":"))
    size = len(encoded) if encoded.isascii() else len(encoded.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(field_name, f"{size} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}")
    clean: dict[str, Any] = json.loads(encoded)
    problem = _metadata_problem(clean)
    if problem is not None:
        raise InvalidInput(f"{field_name}.{problem[0]}", problem[1])
    return clean


def indexed_text(payload: Mapping[str, Any]) -> str:
    """The text that is embedded and keyword-indexed for a payload.

    The string values of ``text``, ``task``, ``fact`` and ``content`` (in that
    order), then every other top-level string value in key order (except the
    metadata keys ``timestamp``, ``expires_at``, ``ttl_seconds``,
    ``importance``, ``memory_type``, ``coordinate``), then the ``tags``;
    joined by newlines.
    """
    parts = [payload[k] for k in TEXT_KEYS if isinstance(payload.get(k), str)]
    for key in sorted(payload):
        if key in TEXT_KEYS or key in NON_TEXT_KEYS or key == "tags":
            continue
        if isinstance(payload[key], str):
            parts.append(payload[key])
    tags = payload.get("tags")
    if isinstance(tags, list):
        parts.extend(t for t in tags if isinstance(t, str))
    return "\n".join(p for p in parts if p)


def _match_one(actual: Any, expected: Any) -> bool:
    if isinstance(expected, Mapping):
        ops = {
            "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b,
            "lte": lambda a, b: a <= b,
        }
        for op, bound in expected.items():
            if op == "in":
                if not isinstance(bound, (list, tuple, str)) or not _match_one(actual, list(bound)):
                    return False
                continue
            if op == "ne":
                if actual == bound:
                    return False
                continue
            fn = ops.get(op)
            if fn is None or isinstance(actual, bool) or not isinstance(actual, (int, float)):
                return False
            if not isinstance(bound, (int, float)):  # a non-numeric bound matches nothing
                return False
            if not fn(actual, bound):
                return False
        return True
    if isinstance(expected, list):
        if isinstance(actual, list):
            return any(item in actual for item in expected)
        return actual in expected
    if isinstance(actual, list):
        return expected in actual
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    return bool(actual == expected)


def matches_filters(payload: Mapping[str, Any], filters: Mapping[str, Any] | None) -> bool:
    """Whether a payload satisfies recall ``filters`` (all must hold).

    ``{"key": value}`` equality (a list field matches if it contains value);
    ``{"key": [a, b]}`` any of; ``{"key": {"gte": 1, "lt": 5}}`` numeric
    range (``gt``, ``gte``, ``lt``, ``lte``), ``{"in": [...]}``, ``{"ne": x}``.
    Dotted keys reach into nested objects (``"meta.source"``).
    """
    if not filters:
        return True
    for key, expected in filters.items():
        actual: Any = payload
        for part in key.split("."):
            if isinstance(actual, Mapping) and part in actual:
                actual = actual[part]
            else:
                actual = _MISSING
                break
        if actual is _MISSING:
            return False
        if not _match_one(actual, expected):
            return False
    return True


_MISSING = object()


def validate_filters(filters: Any, field_name: str = "filters") -> dict[str, Any] | None:
    if filters is None:
        return None
    if not isinstance(filters, Mapping):
        raise InvalidInput(field_name, "must be an object mapping payload keys to values")
    _check_json(filters, field_name, 0)
    for key, expected in filters.items():
        if isinstance(expected, Mapping):
            unknown = set(expected) - {"gt", "gte", "lt", "lte", "in", "ne"}
            if unknown:
                raise InvalidInput(f"{field_name}.{key}", f"unknown operator(s) {sorted(unknown)}")
            for op in ("gt", "gte", "lt", "lte"):
                bound = expected.get(op)
                if op in expected and (isinstance(bound, bool) or not isinstance(bound, (int, float))):
                    raise InvalidInput(f"{field_name}.{key}.{op}", "must be a number")
            if "in" in expected and not isinstance(expected["in"], list):
                raise InvalidInput(f"{field_name}.{key}.in", "must be a list")
    return dict(filters)


def now() -> float:
    return time.time()


@dataclass(slots=True)
class Memory:
    """One stored memory: a JSON payload at a coordinate of a namespace."""

    id: str
    namespace: str
    coordinate: Coordinate
    payload: dict[str, Any]
    memory_type: MemoryType
    created_at: float
    updated_at: float
    version: int = 1

    @property
    def importance(self) -> float:
        value = self.payload.get("importance", 1.0)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 1.0

    @property
    def importance_norm(self) -> float:
        return importance_norm(self.importance)

    @property
    def text(self) -> str:
        return indexed_text(self.payload)

    @property
    def expires_at(self) -> float | None:
        value = self.payload.get("expires_at")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def public_payload(self) -> dict[str, Any]:
        """The payload as recall returns it: with ``coordinate`` and ``memory_type``."""
        out = dict(self.payload)
        out["coordinate"] = list(self.coordinate)
        out["memory_type"] = self.memory_type.value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "coordinate": list(self.coordinate),
            "payload": self.payload,
            "memory_type": self.memory_type.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Memory:
        return cls(
            id=str(data["id"]),
            namespace=str(data["namespace"]),
            coordinate=canonical_coordinate(data["coordinate"]),
            payload=dict(data["payload"]),
            memory_type=MemoryType.parse(data["memory_type"]),
            created_at=float(data["created_at"]),
            updated_at=float(data["updated_at"]),
            version=int(data.get("version", 1)),
        )


@dataclass(slots=True)
class HistoryEntry:
    """One recorded change of a memory: ``action`` is created/updated/deleted."""

    namespace: str
    memory_id: str
    coordinate: Coordinate
    version: int
    action: str
    payload: dict[str, Any] | None
    memory_type: MemoryType | None
    changed_at: float
    actor: str = "library"
    changed_keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "memory_id": self.memory_id,
            "coordinate": list(self.coordinate),
            "version": self.version,
            "action": self.action,
            "payload": self.payload,
            "memory_type": self.memory_type.value if self.memory_type else None,
            "changed_at": self.changed_at,
            "actor": self.actor,
            "changed_keys": self.changed_keys,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryEntry:
        mtype = data.get("memory_type")
        return cls(
            namespace=str(data["namespace"]),
            memory_id=str(data["memory_id"]),
            coordinate=canonical_coordinate(data["coordinate"]),
            version=int(data["version"]),
            action=str(data["action"]),
            payload=dict(data["payload"]) if data.get("payload") is not None else None,
            memory_type=MemoryType.parse(mtype) if mtype else None,
            changed_at=float(data["changed_at"]),
            actor=str(data.get("actor", "library")),
            changed_keys=list(data.get("changed_keys", [])),
        )


@dataclass(slots=True)
class Link:
    """A directed, typed, weighted edge between two memories of a namespace.

    ``weight`` (> 0) is the edge's cost when finding shortest paths.
    """

    namespace: str
    from_id: str
    to_id: str
    from_coord: Coordinate
    to_coord: Coordinate
    link_type: str = "related"
    weight: float = 1.0
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "from_id": self.from_id,
            "to_id": self.to_id,
            "from_coord": list(self.from_coord),
            "to_coord": list(self.to_coord),
            "type": self.link_type,
            "weight": self.weight,
            "metadata": self.metadata,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Link:
        return cls(
            namespace=str(data["namespace"]),
            from_id=str(data["from_id"]),
            to_id=str(data["to_id"]),
            from_coord=canonical_coordinate(data["from_coord"]),
            to_coord=canonical_coordinate(data["to_coord"]),
            link_type=str(data.get("type", "related")),
            weight=float(data.get("weight", 1.0)),
            metadata=dict(data.get("metadata") or {}),
            created_at=float(data.get("created_at", 0.0)),
        )


@dataclass(slots=True)
class ScoreParts:
    """The parts of a hybrid recall score, each in [0, 1]."""

    vector: float = 0.0
    keyword: float = 0.0
    importance: float = 0.0
    recency: float = 0.0
    graph: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {
            "vector": self.vector,
            "keyword": self.keyword,
            "importance": self.importance,
            "recency": self.recency,
            "graph": self.graph,
        }


@dataclass(slots=True)
class RecallHit:
    """One recall result: the memory, its score and the score's parts."""

    memory: Memory
    score: float
    parts: ScoreParts

    @property
    def coordinate(self) -> Coordinate:
        return self.memory.coordinate

    def to_dict(self) -> dict[str, Any]:
        return {
            "coord": list(self.memory.coordinate),
            "payload": self.memory.public_payload(),
            "score": self.score,
            "parts": self.parts.to_dict(),
        }


@dataclass(slots=True)
class MemoryEvent:
    """An event describing one write, as published on ``memory.events``."""

    type: str
    namespace: str
    memory_id: str
    coordinate: Coordinate
    timestamp: float
    payload: dict[str, Any] | None = None
    memory_type: str | None = None
    version: int | None = None
    link: dict[str, Any] | None = None
    event_id: str = field(default_factory=new_event_id)
    schema_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "event_id": self.event_id,
            "schema_version": self.schema_version,
            "type": self.type,
            "namespace": self.namespace,
            "memory_id": self.memory_id,
            "coordinate": list(self.coordinate),
            "timestamp": self.timestamp,
        }
        for key in ("payload", "memory_type", "version", "link"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data
