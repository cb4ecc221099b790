"""The hybrid recall score (see docs/FAST_CORE_MATH.md, "Hybrid recall").

Every part is in [0, 1]::

    relevance = (w_vector * vector + w_keyword * keyword) / (w_vector + w_keyword)
    modifier  = importance_norm ** w_importance * (1 - w_recency + w_recency * recency)
    score     = modifier * ((1 - w_graph) * relevance + w_graph * graph)

``vector`` is ``max(0, cosine)``; ``keyword`` is the BM25 relevance divided
by the best BM25 relevance among the query's candidates; ``recency`` is
``0.5 ** (age / half_life)``; ``graph`` is ``1 / hops`` from a context
coordinate (0 when unreachable within two hops or no context is given, in
which case ``w_graph`` is ignored). With ``w_keyword = 0``,
``w_recency = 0`` and ``w_importance = 1`` the score is the fast core's
base score ``max(0, cosine) * importance_norm``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import InvalidInput
from ..models import ScoreParts

__all__ = ["DEFAULT_WEIGHTS", "Weights", "combine", "recency"]


@dataclass(frozen=True, slots=True)
class Weights:
    """Weights of the score parts (each >= 0)."""

    vector: float = 0.4
    keyword: float = 0.6
    importance: float = 1.0
    recency: float = 0.1
    graph: float = 0.3

    def merged(self, overrides: Mapping[str, Any] | None, field_name: str = "weights") -> Weights:
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        changes: dict[str, float] = {}
        for key, value in overrides.items():
            if key not in known:
                raise InvalidInput(
                    f"{field_name}.{key}", f"unknown weight; known: {', '.join(sorted(known))}"
                )
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise InvalidInput(f"{field_name}.{key}", "must be a finite number >= 0")
            changes[key] = float(value)
        merged = replace(self, **changes)
        if merged.vector + merged.keyword <= 0:
            raise InvalidInput(field_name, "vector and keyword weights cannot both be 0")
        if merged.recency > 1 or merged.graph > 1:
            raise InvalidInput(field_name, "recency and graph weights must be at most 1")
        return merged


DEFAULT_WEIGHTS = Weights()


def recency(age_seconds: float, half_life_seconds: float) -> float:
    """``0.5 ** (age / half_life)``; 1.0 for ages <= 0."""
    if age_seconds <= 0 or half_life_seconds <= 0:
        return 1.0
    return float(0.5 ** (age_seconds / half_life_seconds))


def combine(parts: ScoreParts, w: Weights, use_graph: bool) -> float:
    relevance = (w.vector * parts.vector + w.keyword * parts.keyword) / (w.vector + w.keyword)
    modifier = float(parts.importance**w.importance) * (1.0 - w.recency + w.recency * parts.recency)
    if use_graph:
        return modifier * ((1.0 - w.graph) * relevance + w.graph * parts.graph)
    return modifier * relevance
