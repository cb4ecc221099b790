"""Reads by meaning and keyword: hybrid recall, batch recall, keyword search."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..interfaces.storage import Vector
from ..models import (
    Coordinate,
    Memory,
    MemoryType,
    RecallHit,
    ScoreParts,
    canonical_coordinate,
    matches_filters,
    memory_id,
    now,
    validate_filters,
)
from .backends import Backends
from .graph import GraphService
from .hooks import Hooks
from .scoring import DEFAULT_WEIGHTS, Weights, combine, recency

__all__ = ["RecallRequest", "RecallService"]

MAX_TOP_K = 1000
MAX_QUERY_CHARS = 10_000


@dataclass(slots=True)
class RecallRequest:
    """A validated recall: what every recall entry point is turned into."""

    query: str
    top_k: int
    memory_type: MemoryType | None
    filters: dict[str, Any] | None
    weights: Weights
    min_score: float
    anchors: list[Coordinate]
    as_of: float | None

    @classmethod
    def build(
        cls,
        query: Any,
        top_k: Any = 5,
        memory_type: Any = None,
        filters: Any = None,
        context: Mapping[str, Any] | None = None,
        min_score: Any = None,
        weights: Mapping[str, Any] | None = None,
    ) -> RecallRequest:
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput("query", "must be a non-empty string")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidInput("query", f"at most {MAX_QUERY_CHARS} characters")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidInput("top_k", f"must be an integer from 1 to {MAX_TOP_K}")
        mtype = MemoryType.parse_optional(memory_type)
        merged_filters = validate_filters(filters)
        anchors: list[Coordinate] = []
        as_of = None
        extra_text: list[str] = []
        if context is not None:
            if not isinstance(context, Mapping):
                raise InvalidInput("context", "must be an object")
            for key, value in context.items():
                if key in ("coordinate", "coord"):
                    anchors.append(canonical_coordinate(value, f"context.{key}"))
                elif key == "coordinates":
                    if not isinstance(value, list):
                        raise InvalidInput("context.coordinates", "must be a list of coordinates")
                    anchors += [
                        canonical_coordinate(v, f"context.coordinates[{i}]") for i, v in enumerate(value)
                    ]
                elif key == "filters":
                    more = validate_filters(value, "context.filters") or {}
                    merged_filters = {**(merged_filters or {}), **more}
                elif key == "memory_type":
                    mtype = MemoryType.parse(value, "context.memory_type")
                elif key == "weights":
                    if not isinstance(value, Mapping):
                        raise InvalidInput("context.weights", "must be an object")
                    weights = {**(weights or {}), **value}
                elif key == "as_of":
                    if (
                        isinstance(value, bool)
                        or not isinstance(value, (int, float))
                        or not math.isfinite(value)
                    ):
                        raise InvalidInput("context.as_of", "must be a timestamp in seconds")
                    as_of = float(value)
                elif isinstance(value, str):
                    extra_text.append(value)
        if min_score is None:
            floor = 0.0
        elif (
            isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not 0 <= min_score <= 1
        ):
            raise InvalidInput("min_score", "must be a number from 0 to 1")
        else:
            floor = float(min_score)
        text = " ".join([query, *extra_text])
        return cls(text, top_k, mtype, merged_filters, DEFAULT_WEIGHTS.merged(weights), floor, anchors, as_of)


class RecallService:
    """Hybrid recall over one namespace (see ``services.scoring``)."""

    def __init__(self, namespace: str, backends: Backends, graph: GraphService, hooks: Hooks) -> None:
        self.namespace = namespace
        self.b = backends
        self.graph = graph
        self.hooks = hooks

    def recall(self, request: RecallRequest) -> list[RecallHit]:
        return self.recall_many([request])[0]

    def recall_many(self, requests: Sequence[RecallRequest]) -> list[list[RecallHit]]:
        """Recall several requests; their queries are embedded in one batch."""
        if not requests:
            return []
        for r in requests:
            self.hooks.fire("before_recall", query=r.query, top_k=r.top_k)
        self._sync()
        matrix = self.b.embedder.embed([r.query for r in requests])
        results = [self._one(r, matrix[i]) for i, r in enumerate(requests)]
        for r, hits in zip(requests, results, strict=True):
            self.hooks.fire("after_recall", query=r.query, hits=hits)
        return results

    def keyword_search(
        self, term: str, top_k: int = 10, memory_type: Any = None, filters: Any = None
    ) -> list[RecallHit]:
        request = RecallRequest.build(
            term, top_k, memory_type, filters, weights={"vector": 0.0, "keyword": 1.0, "recency": 0.0}
        )
        self._sync()
        hits = self._keyword_candidates(request)
        if not hits:
            return []
        memories = self._load(request, list(hits))
        best = max(hits.values())
        out = []
        for mid, memory in memories.items():
            parts = ScoreParts(keyword=hits[mid] / best, importance=memory.importance_norm)
            out.append(RecallHit(memory, parts.keyword, parts))
        out.sort(key=lambda h: (-h.score, h.memory.id))
        return out[: request.top_k]

    # -- internals --------------------------------------------------------
    def _sync(self) -> None:
        """Apply other processes' writes to the in-process indexes first (``services.follower``)."""
        if self.b.follower is not None:
            self.b.follower.sync()

    def _pool(self, r: RecallRequest) -> int:
        return max(30, 3 * r.top_k) if not (r.filters or r.memory_type) else max(200, 10 * r.top_k)

    def _keyword_candidates(self, r: RecallRequest) -> dict[str, float]:
        if r.weights.keyword <= 0:
            return {}
        return dict(self.b.keywords.search(self.namespace, r.query, self._pool(r)))

    def _load(self, r: RecallRequest, ids: list[str]) -> dict[str, Memory]:
        memories = self.b.kv.get_many(self.namespace, ids)
        at = r.as_of if r.as_of is not None else now()
        out = {}
        for mid, m in memories.items():
            if r.memory_type is not None and m.memory_type is not r.memory_type:
                continue
            if not matches_filters(m.payload, r.filters):
                continue
            expires = m.expires_at
            if expires is not None and expires <= at:
                continue
            if r.as_of is not None and m.created_at > r.as_of:
                continue
            out[mid] = m
        return out

    def _graph_scores(self, r: RecallRequest) -> dict[str, float]:
        scores: dict[str, float] = {}
        for anchor in r.anchors:
            for mid, hops in self.graph.hops_from(memory_id(self.namespace, anchor), max_hops=2).items():
                scores[mid] = max(scores.get(mid, 0.0), 1.0 / hops if hops else 1.0)
        return scores

    def _one(self, r: RecallRequest, qv: Vector) -> list[RecallHit]:
        w = r.weights
        cos: dict[str, float] = {}
        if w.vector > 0 and float(np.abs(qv).sum()) > 0:
            for hit in self.b.vectors.search(self.namespace, qv, self._pool(r), r.memory_type, r.filters):
                cos[hit.id] = hit.cosine
        kw = self._keyword_candidates(r)
        graph = self._graph_scores(r) if r.anchors else {}
        ids = list(dict.fromkeys([*cos, *kw, *graph]))
        if not ids:
            return []
        memories = self._load(r, ids)
        missing = [mid for mid in memories if mid not in cos]
        if missing and w.vector > 0:
            cos.update(self.b.vectors.cosines(self.namespace, qv, missing))
        best_kw = max((kw[m] for m in memories if m in kw), default=0.0)
        at = r.as_of if r.as_of is not None else now()
        half_life = self.b.options.recency_half_life_seconds
        hits = []
        for mid, memory in memories.items():
            stamp = memory.payload.get("timestamp")
            when = (
                float(stamp)
                if isinstance(stamp, (int, float)) and not isinstance(stamp, bool)
                else memory.updated_at
            )
            parts = ScoreParts(
                vector=max(0.0, cos.get(mid, 0.0)),
                keyword=kw.get(mid, 0.0) / best_kw if best_kw > 0 else 0.0,
                importance=memory.importance_norm,
                recency=recency(at - when, half_life),
                graph=graph.get(mid, 0.0),
            )
            score = combine(parts, w, bool(r.anchors))
            if score >= r.min_score:
                hits.append(RecallHit(memory, score, parts))
        hits.sort(key=lambda h: (-h.score, h.memory.id))
        return hits[: r.top_k]
