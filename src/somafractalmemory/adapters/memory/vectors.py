"""``InMemoryVectorStore``: the reference vector store (adapter name ``memory``).

Deliberately plain: a dict per namespace from id to the indexed point; a
search filters the points one by one, stacks the survivors' vectors and
scores them in float64, then sorts by ``(-score, id)``. It is the baseline
the fast core is checked and benchmarked against, so it favours being
obviously correct over being fast.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import BackendUnavailable, InvalidInput
from ...interfaces.storage import Filters, Vector, VectorHit, VectorPoint
from ...models import MemoryType, matches_filters, validate_filters, validate_namespace

__all__ = ["InMemoryVectorStore"]


@dataclass(frozen=True, slots=True)
class _Entry:
    vector: Vector
    importance_norm: float
    memory_type: MemoryType
    version: int
    payload: dict[str, Any]


class InMemoryVectorStore:
    """Vectors in Python dicts; exact search by brute force."""

    name = "memory"

    def __init__(self, dim: int = 384) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidInput("dim", f"must be a positive integer, got {dim!r}")
        self.dim = dim
        self._spaces: dict[str, dict[str, _Entry]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def upsert(self, namespace: str, points: Sequence[VectorPoint]) -> None:
        validate_namespace(namespace)
        entries = {}
        for i, point in enumerate(points):
            where = f"points[{i}]"
            if not isinstance(point.id, str) or not point.id:
                raise InvalidInput(f"{where}.id", "must be a non-empty string")
            imp = point.importance_norm
            if isinstance(imp, bool) or not isinstance(imp, (int, float)) or not 0.0 <= imp <= 1.0:
                raise InvalidInput(f"{where}.importance_norm", f"must be a number in [0, 1], got {imp!r}")
            version = point.version
            if isinstance(version, bool) or not isinstance(version, int) or version < 0:
                raise InvalidInput(f"{where}.version", f"must be an integer >= 0, got {version!r}")
            entries[point.id] = _Entry(
                vector=self._unit(point.vector, f"{where}.vector"),
                importance_norm=float(imp),
                memory_type=MemoryType.parse(point.memory_type, f"{where}.memory_type"),
                version=version,
                payload=dict(point.payload or {}),
            )
        with self._lock:
            self._check_open()
            self._spaces.setdefault(namespace, {}).update(entries)

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        validate_namespace(namespace)
        with self._lock:
            self._check_open()
            space = self._spaces.get(namespace, {})
            for point_id in ids:
                space.pop(point_id, None)

    def search(
        self,
        namespace: str,
        vector: Vector,
        k: int,
        memory_type: MemoryType | None = None,
        filters: Filters | None = None,
    ) -> list[VectorHit]:
        validate_namespace(namespace)
        query = self._unit(vector, "vector").astype(np.float64)
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InvalidInput("k", f"must be an integer >= 0, got {k!r}")
        wanted = None if memory_type is None else MemoryType.parse(memory_type)
        clean = validate_filters(filters)
        with self._lock:
            self._check_open()
            candidates = [
                (point_id, entry)
                for point_id, entry in self._spaces.get(namespace, {}).items()
                if (wanted is None or entry.memory_type is wanted) and matches_filters(entry.payload, clean)
            ]
        if not candidates or k == 0:
            return []
        matrix = np.stack([entry.vector for _, entry in candidates]).astype(np.float64)
        cosines = np.clip(matrix @ query, -1.0, 1.0)
        hits = [
            VectorHit(point_id, max(0.0, float(cos)) * entry.importance_norm, float(cos))
            for (point_id, entry), cos in zip(candidates, cosines, strict=True)
        ]
        hits.sort(key=lambda hit: (-hit.score, hit.id))
        return hits[:k]

    def cosines(self, namespace: str, vector: Vector, ids: Sequence[str]) -> dict[str, float]:
        validate_namespace(namespace)
        query = self._unit(vector, "vector").astype(np.float64)
        with self._lock:
            self._check_open()
            space = self._spaces.get(namespace, {})
            found = {pid: space[pid].vector for pid in ids if pid in space}
        return {pid: float(np.clip(v.astype(np.float64) @ query, -1.0, 1.0)) for pid, v in found.items()}

    def versions(self, namespace: str, ids: Sequence[str] | None = None) -> dict[str, int]:
        with self._lock:
            self._check_open()
            space = self._spaces.get(namespace, {})
            if ids is not None:
                return {pid: space[pid].version for pid in ids if pid in space}
            return {pid: e.version for pid, e in space.items()}

    def count(self, namespace: str) -> int:
        with self._lock:
            self._check_open()
            return len(self._spaces.get(namespace, {}))

    def flush(self) -> None:
        """Nothing to persist: the store lives and dies with the process."""

    def health(self) -> None:
        with self._lock:
            self._check_open()

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _unit(self, vector: Any, field: str) -> Vector:
        try:
            arr = np.array(vector, dtype=np.float32)
        except (TypeError, ValueError):
            raise InvalidInput(field, "must be a sequence of numbers") from None
        if arr.shape != (self.dim,):
            raise InvalidInput(field, f"expected shape ({self.dim},), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise InvalidInput(field, "values must be finite")
        wide = arr.astype(np.float64)
        norm = math.sqrt(float(wide @ wide))
        return (wide / norm).astype(np.float32) if norm > 0 else np.zeros(self.dim, dtype=np.float32)

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailable("in-memory vector store", "the vector store is closed")
