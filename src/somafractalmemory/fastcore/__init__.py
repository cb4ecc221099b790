"""The fast core: an in-process vector index for the base score.

``FastCoreVectorStore`` (adapter name ``fast``) keeps each namespace in a
contiguous float32 slab searched exactly (:mod:`.slab`), and above a size
threshold proposes candidates from an HNSW index (:mod:`.ann`, needs the
``ann`` extra) that are verified and re-scored exactly. The formulas and
invariants are written down in ``docs/FAST_CORE_MATH.md``.
"""

from __future__ import annotations

from .ann import DEFAULT_THRESHOLD, AnnParams, ann_available
from .store import FastCoreVectorStore

__all__ = ["DEFAULT_THRESHOLD", "AnnParams", "FastCoreVectorStore", "ann_available"]
