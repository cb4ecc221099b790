"""The ranking of one search: exact top-k by ``(-score, id)`` over Qdrant.

Qdrant ranks by its DOT score (``cosine * importance_norm`` here) but
breaks ties arbitrarily and ranks negative scores, which the port clamps
to 0. So a search runs in two phases:

1. **Positive scores**: ``query_points`` with the pushed-down filter, paged
   until ``k`` accepted hits are found and the last fetched score is
   strictly below the k-th (so every exact tie of the k-th is seen), or a
   score <= 0 / the end of the collection is reached. Candidates are checked
   client side when the filter plan is not exact; pages grow fourfold.
2. **Zero scores**: if fewer than ``k`` points score > 0, the rest come
   from the points scoring 0 (cosine <= 0), smallest ids first: a scroll in
   point-id order (= memory-id order when every id is a UUID), or, when the
   collection holds other ids, a full read sorted client side.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ...interfaces.storage import Filters, VectorHit
from ...models import MemoryType, matches_filters
from .client import Connection
from .filters import PAYLOAD_KEY, TYPE_KEY, FilterPlan

try:
    from qdrant_client import models as qm
except ImportError as exc:  # pragma: no cover - client.py raises first
    from ...errors import MissingDependency

    raise MissingDependency("qdrant-client", "qdrant") from exc

__all__ = [
    "IMP",
    "MEMORY_ID",
    "PAGE",
    "PLAIN",
    "VERSION",
    "Request",
    "cosine",
    "memory_id_of",
    "point_id",
    "run",
]

IMP, VERSION, MEMORY_ID, PLAIN = "importance_norm", "version", "id", "plain_id"
PAGE = 1000
MAX_FETCH = 10_000
#: UUIDv5 namespace of point ids for memory ids that are not UUIDs.
_PLAIN_IDS = uuid.UUID("0f0c2b9e-7a51-5d0e-9a43-6f1e8b1d2c47")


@dataclass(slots=True)
class Request:
    """One search: the collection, the unit query, what Qdrant filters
    (``plan``) and what must hold in the end (``memory_type``, ``filters``)."""

    conn: Connection
    name: str
    query: npt.NDArray[np.float32]
    plan: FilterPlan
    memory_type: MemoryType | None
    filters: Filters | None
    params: qm.SearchParams | None

    def selector(self) -> list[str]:
        """Payload fields to fetch: the memory payload only to check it here."""
        return [IMP, MEMORY_ID] if self.plan.exact else [IMP, MEMORY_ID, TYPE_KEY, PAYLOAD_KEY]

    def accepts(self, payload: dict[str, Any]) -> bool:
        if self.plan.exact:
            return True
        if self.memory_type is not None and payload.get(TYPE_KEY) != self.memory_type.value:
            return False
        return matches_filters(payload.get(PAYLOAD_KEY) or {}, self.filters)


def run(request: Request, k: int, plain_ids: bool | None) -> list[VectorHit]:
    """The top ``k``; ``plain_ids`` says whether the collection may hold
    non-UUID ids (None: ask Qdrant when it matters)."""
    hits = _positive(request, k) if request.query.any() else []
    if len(hits) < k:
        hits += _zero(request, k - len(hits), {h.id for h in hits}, plain_ids)
    return hits


def _positive(request: Request, k: int) -> list[VectorHit]:
    client = request.conn.client
    limit = k + 1 if request.plan.exact else min(max(4 * k, k + 64), MAX_FETCH)
    offset = 0
    found: dict[str, VectorHit] = {}
    while True:
        with request.conn.call("search"):
            points = client.query_points(
                request.name,
                query=request.query,
                query_filter=request.plan.filter,
                limit=limit,
                offset=offset,
                with_payload=request.selector(),
                with_vectors=False,
                search_params=request.params,
            ).points
        done = len(points) < limit
        for p in points:
            if p.score <= 0:
                done = True
                break
            payload = p.payload or {}
            if request.accepts(payload):
                mid = memory_id_of(p)
                found[mid] = VectorHit(mid, float(p.score), _unscale(p.score, payload))
        ranked = sorted(found.values(), key=lambda h: (-h.score, h.id))
        if done or (len(ranked) >= k and points[-1].score < ranked[k - 1].score):
            return ranked[:k]
        offset += limit
        limit = min(limit * 4, MAX_FETCH)


def _zero(request: Request, need: int, skip: set[str], plain_ids: bool | None) -> list[VectorHit]:
    client = request.conn.client
    in_order = not (_has_plain_ids(request) if plain_ids is None else plain_ids)
    page = need + len(skip) + 1 if request.plan.exact else max(need + len(skip) + 1, 256)
    chosen: list[tuple[str, Any]] = []  # (memory id, stored vector or None)
    offset: Any = None
    while True:
        with request.conn.call("scroll"):
            records, offset = client.scroll(
                request.name,
                scroll_filter=request.plan.filter,
                limit=min(page, MAX_FETCH) if in_order else PAGE,
                offset=offset,
                with_payload=request.selector(),
                with_vectors=in_order,
            )
        for r in records:
            mid = memory_id_of(r)
            if mid not in skip and request.accepts(r.payload or {}):
                chosen.append((mid, r.vector))
        if offset is None or (in_order and len(chosen) >= need):
            break
    chosen = sorted(chosen, key=lambda c: c[0])[:need]
    if not in_order and chosen:
        pids = {point_id(mid): mid for mid, _ in chosen}
        with request.conn.call("retrieve"):
            records = client.retrieve(request.name, ids=list(pids), with_payload=False, with_vectors=True)
        stored = {pids[str(r.id)]: r.vector for r in records}
        chosen = [(mid, stored.get(mid)) for mid, _ in chosen]
    return [VectorHit(mid, 0.0, cosine(request.query, vector)) for mid, vector in chosen]


def _has_plain_ids(request: Request) -> bool:
    plain = qm.Filter(must=[qm.FieldCondition(key=PLAIN, match=qm.MatchValue(value=True))])
    with request.conn.call("count"):
        return bool(request.conn.client.count(request.name, count_filter=plain, exact=True).count)


def point_id(memory_id: str) -> str:
    """The Qdrant point id of a memory id: itself when it is a (lowercase)
    UUID, else its UUIDv5 (the memory id is then kept in the payload)."""
    try:
        if str(uuid.UUID(memory_id)) == memory_id:
            return memory_id
    except ValueError:
        pass
    return str(uuid.uuid5(_PLAIN_IDS, memory_id))


def memory_id_of(record: Any) -> str:
    mid = (record.payload or {}).get(MEMORY_ID)
    return mid if isinstance(mid, str) else str(record.id)


def cosine(query: npt.NDArray[np.float32], stored: Any) -> float:
    """Cosine of the unit query with a stored (importance-scaled) vector."""
    if not isinstance(stored, list):
        return 0.0
    vec = np.asarray(stored, dtype=np.float64)
    norm = float(np.linalg.norm(vec))
    return float(np.clip(np.dot(query.astype(np.float64), vec) / norm, -1.0, 1.0)) if norm > 0 else 0.0


def _unscale(score: float, payload: dict[str, Any]) -> float:
    imp = float(payload.get(IMP) or 0.0)
    return min(1.0, float(score) / imp) if imp > 0 else 0.0
