"""``FastCoreVectorStore``: the in-process vector store (adapter name ``fast``).

One :class:`~.slab.Slab` per namespace answers every search exactly; when a
namespace holds at least ``AnnParams.threshold`` points and a search has no
filters, an HNSW index (:mod:`.ann`) proposes candidates that are verified
and re-scored from the slab. The index is built on first need - in a
background thread by default, exact search serving meanwhile - and then
kept up to date on every write.

With ``path``, the store keeps its namespaces in files, safely shared by
processes (``persist.py``). One lock guards everything, so threads may
share it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BackendUnavailable, InvalidInput
from ..interfaces.storage import Filters, Vector, VectorHit, VectorPoint
from ..models import MemoryType, validate_filters, validate_namespace
from .ann import AnnIndex, AnnParams, ann_available
from .checkpoint import Checkpoint
from .persist import SlabFiles
from .persist import Space as _Space
from .slab import TYPE_CODES, Slab, normalise, prepare_points, top_rows

__all__ = ["FastCoreVectorStore"]

log = logging.getLogger(__name__)
#: An upsert of more points than this (and a quarter of the namespace) drops
#: the ANN index instead of extending it; the next search rebuilds it.
_BULK = 10_000


class FastCoreVectorStore(SlabFiles):
    """Exact slab search, HNSW above a threshold, optional persistence."""

    name = "fast"

    def __init__(
        self,
        dim: int = 384,
        path: str | os.PathLike[str] | None = None,
        *,
        ann: bool = True,
        ann_threshold: int | None = None,
        ann_params: AnnParams | None = None,
        ann_background: bool = True,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidInput("dim", f"must be a positive integer, got {dim!r}")
        params = ann_params or AnnParams()
        if ann_threshold is not None:
            params = dataclasses.replace(params, threshold=max(1, int(ann_threshold)))
        self.dim = dim
        self._params = params
        self._use_ann = ann  # usearch is imported only once a namespace reaches the threshold
        self._background = ann_background
        self._lock = threading.RLock()
        self._spaces: dict[str, _Space] = {}
        self._closed = False
        #: How many searches each path answered (``ann``, ``exact``), for metrics.
        self.search_counts = {"ann": 0, "exact": 0}
        self._path = Path(path) if path is not None else None
        self._mark: Checkpoint | None = None
        self._discarded: set[str] = set()
        if self._path is not None:
            self._load(self._path)

    # -- writes ---------------------------------------------------------------

    def upsert(self, namespace: str, points: Sequence[VectorPoint]) -> None:
        validate_namespace(namespace)
        if not points:
            return
        ids, vectors, importance, types, versions, payloads = prepare_points(points, self.dim)
        with self._lock:
            self._check_open()
            space = self._spaces.get(namespace)
            if space is None:
                space = self._spaces[namespace] = _Space(Slab(self.dim))
            replaced, rows, moved = space.slab.upsert(ids, vectors, importance, types, versions, payloads)
            if space.ann is not None and len(rows) > max(_BULK, space.slab.size // 4):
                space.ann = None  # a bulk load: rebuild in the background, not under the lock
            elif space.ann is not None:
                space.ann.remove(replaced)
                if moved:  # a point rewritten with the same vector and importance keeps its entry
                    new = np.asarray(moved, dtype=np.intp)
                    keys = space.slab.keys[np.asarray(rows, dtype=np.intp)[new]]
                    space.ann.add(keys, vectors[new] * importance[new, None])
            space.dirty = True
            space.ann_saved = False

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        validate_namespace(namespace)
        with self._lock:
            self._check_open()
            space = self._spaces.get(namespace)
            if space is None:
                return
            removed = space.slab.delete(list(ids))
            if removed:
                if space.ann is not None:
                    space.ann.remove(removed)
                space.dirty = True
                space.ann_saved = False

    # -- reads ----------------------------------------------------------------

    def search(
        self,
        namespace: str,
        vector: Vector,
        k: int,
        memory_type: MemoryType | None = None,
        filters: Filters | None = None,
    ) -> list[VectorHit]:
        validate_namespace(namespace)
        query = normalise(vector, self.dim)
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InvalidInput("k", f"must be an integer >= 0, got {k!r}")
        type_code = None if memory_type is None else TYPE_CODES.index(MemoryType.parse(memory_type))
        clean = validate_filters(filters)
        with self._lock:
            self._check_open()
            space = self._spaces.get(namespace)
            if space is None or k == 0:
                return []
            slab = space.slab
            if self._ann_applies(space, k, type_code, clean):
                hits = self._ann_search(namespace, space, query, k)
                if hits is not None:
                    self.search_counts["ann"] += 1
                    return hits
            self.search_counts["exact"] += 1
            found = slab.search(query, k, type_code, clean)
            return [VectorHit(slab.ids[row], score, cos) for row, score, cos in found]

    def cosines(self, namespace: str, vector: Vector, ids: Sequence[str]) -> dict[str, float]:
        validate_namespace(namespace)
        query = normalise(vector, self.dim)
        with self._lock:
            self._check_open()
            space = self._spaces.get(namespace)
            if space is None:
                return {}
            slab = space.slab
            found = {pid: row for pid in ids if (row := slab.rows.get(pid)) is not None}
            rows = np.fromiter(found.values(), dtype=np.intp, count=len(found))
            cos = np.clip(slab.cosines(query, rows), -1.0, 1.0).tolist()
            return dict(zip(found, cos, strict=True))

    def versions(self, namespace: str, ids: Sequence[str] | None = None) -> dict[str, int]:
        with self._lock:
            self._check_open()
            space = self._spaces.get(namespace)
            if space is None:
                return {}
            slab = space.slab
            if ids is not None:
                return {
                    pid: int(slab.versions[row]) for pid in ids if (row := slab.rows.get(pid)) is not None
                }
            return dict(zip(slab.ids, slab.versions[: slab.size].tolist(), strict=True))

    def index_info(self, namespace: str) -> dict[str, Any]:
        """How a namespace is searched: ``points``, ``ann`` (an index is in
        use), ``ann_building`` and the calibrated ``expansion_search``."""
        with self._lock:
            space = self._spaces.get(namespace)
            ann = None if space is None else space.ann
            return {
                "points": 0 if space is None else space.slab.size,
                "ann": ann is not None,
                "ann_building": space is not None and space.builder is not None,
                "expansion_search": None if ann is None else ann.expansion_search,
            }

    def count(self, namespace: str) -> int:
        with self._lock:
            self._check_open()
            space = self._spaces.get(namespace)
            return 0 if space is None else space.slab.size

    # -- ANN ------------------------------------------------------------------

    def _ann_applies(self, space: _Space, k: int, type_code: int | None, filters: Any) -> bool:
        size = space.slab.size
        return (
            self._use_ann
            and type_code is None
            and not filters
            and size >= max(self._params.threshold, space.ann_off_below)
            and self._params.candidates(k) < size
            and ann_available()
        )

    def _ann_search(self, namespace: str, space: _Space, query: Vector, k: int) -> list[VectorHit] | None:
        """Verified, exactly re-scored ANN hits; None means "use exact search"."""
        if space.ann is None or space.ann.needs_rebuild():
            self._start_build(namespace, space)
        if space.ann is None or not np.any(query):
            return None
        slab = space.slab
        proposed = dict.fromkeys(map(slab.key_rows.get, space.ann.search(query, k)))
        rows = [r for r in proposed if r is not None]  # current keys only (a stale key maps to None)
        if len(rows) < k:
            return None
        picked = np.asarray(rows, dtype=np.intp)
        cos = slab.cosines(query, picked)
        score = slab.base_scores(cos, picked)
        ids = slab.ids
        best = top_rows(score, k, [ids[r] for r in rows])
        if score[best[-1]] <= score.min():  # the k-th score may tie with rows never proposed
            return None  # (always so for score 0): only exact search can settle ties by id
        scores = score[best].tolist()
        cosines = np.clip(cos[best], -1.0, 1.0).tolist()
        return [VectorHit(ids[rows[i]], scores[j], cosines[j]) for j, i in enumerate(best)]

    def _start_build(self, namespace: str, space: _Space) -> None:
        if space.builder is not None:
            return
        slab = space.slab
        keys = slab.keys[: slab.size].copy()
        scaled = slab.vectors[: slab.size] * slab.importance[: slab.size, None]
        if not self._background:
            self._build(namespace, space, keys, scaled)
            return
        space.builder = threading.Thread(
            target=self._build, args=(namespace, space, keys, scaled), name="sfm-ann-build", daemon=True
        )
        space.builder.start()

    def _build(self, namespace: str, space: _Space, keys: npt.NDArray[np.uint64], scaled: Vector) -> None:
        """Build and calibrate an index from a snapshot, then install it.

        Runs without the lock (in the builder thread) except the install; a
        failed build or calibration turns ANN off for the namespace until it
        doubles in size, so exact search serves and nothing is retried in a loop.
        """
        index: AnnIndex | None = None
        try:
            built = AnnIndex(self.dim, self._params)
            if (
                built.add(keys, scaled, stop=lambda: self._closed)
                and built.calibrate(keys, scaled) is not None
            ):
                index = built
            elif not self._closed:
                log.info("ANN misses the target overlap in namespace %r: exact search", namespace)
        except Exception:
            log.exception("building the ANN index of namespace %r failed", namespace)
        with self._lock:
            space.builder = None
            if self._closed or self._spaces.get(namespace) is not space:
                return
            if index is None:
                space.ann, space.ann_off_below = None, 2 * len(keys)
            else:
                self._install(space, index, keys)

    def _install(self, space: _Space, index: AnnIndex, built: npt.NDArray[np.uint64] | None) -> int:
        """Bring ``index`` (built from keys ``built``, or loaded) up to date;
        return how many points it lacked or held in excess."""
        slab = space.slab
        current = slab.keys[: slab.size]
        present = index.contains(current) if built is None else np.isin(current, built)
        missing = np.flatnonzero(~present)
        if missing.size:
            index.add(current[missing], slab.vectors[missing] * slab.importance[missing, None])
        if built is not None:
            gone = built[~np.isin(built, current)].tolist()
            index.remove(gone)
            excess = len(gone)
        else:  # a loaded index may hold keys written before a crash: harmless, never current
            excess = max(0, len(index) - slab.size)
            index.removed += excess
        space.ann = index
        space.ann_saved = False
        return int(missing.size) + excess

    # -- persistence and lifecycle --------------------------------------------

    def health(self) -> None:
        with self._lock:
            self._check_open()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._flush()
            finally:
                self._closed = True
                builders = [s.builder for s in self._spaces.values() if s.builder is not None]
        for thread in builders:
            thread.join(timeout=30)

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailable("fast core", "the vector store is closed")
