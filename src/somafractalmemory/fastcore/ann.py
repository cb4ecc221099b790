"""Approximate nearest neighbours (HNSW, via ``usearch``) over a slab.

The index holds ``vector * importance_norm`` under the row's ANN key, with
the inner-product metric, so ``dot(q, v * imp) = cosine * imp`` ranks like
the base score for positive cosines. It only proposes candidates: the store
checks every returned key against the slab (a key is current only while
its row is unchanged) and recomputes exact scores from the slab, so a
deleted or replaced point can never come back.

``usearch`` is optional (the ``ann`` extra); without it the fast core is
exact only and says so once in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_THRESHOLD", "AnnIndex", "AnnParams", "ann_available"]

log = logging.getLogger(__name__)

#: A namespace is searched through the ANN index from this many points on.
DEFAULT_THRESHOLD = 5_000
_CHUNK = 8192
#: Removed keys are taken out of the graph this many at a time: the first
#: add after a remove call costs ~0.25 ms more at 12,000 points, so one
#: remove per write tripled the cost of an update. Until then a removed key
#: can still be proposed, and the store drops it (no slab row carries it).
_REMOVE_BATCH = 64
_state: dict[str, Any] = {"checked": False, "module": None}


def _usearch() -> ModuleType | None:
    """The ``usearch.index`` module, or None (logged once) when missing."""
    if not _state["checked"]:
        _state["checked"] = True
        try:
            # onnxruntime (the MiniLM embedder) segfaults when it is first imported
            # after usearch's native module in the same process; import it first.
            import importlib.util

            if importlib.util.find_spec("onnxruntime") is not None:
                import onnxruntime  # noqa: F401
            import usearch.index as module
        except ImportError:
            log.warning(
                "usearch is not installed: the fast core runs exact search only; "
                "install it with: pip install 'somafractalmemory[ann]'"
            )
        else:
            _state["module"] = module
    module = _state["module"]
    return module if isinstance(module, ModuleType) else None


def ann_available() -> bool:
    """Whether the ANN index can be used (``usearch`` imports)."""
    return _usearch() is not None


@dataclass(frozen=True, slots=True)
class AnnParams:
    """HNSW parameters (see ``docs/FAST_CORE_MATH.md`` for how they were tuned).

    ``connectivity`` is HNSW's M, ``expansion_add`` its ef_construction,
    ``expansion_search`` its starting ef; ``candidates(k)`` keys are fetched
    for ``k`` wanted hits and re-ranked exactly: ``oversample`` per hit while
    that stays within ``min_candidates``, and never fewer than two per hit;
    ``dtype`` is the index's storage type (the exact re-rank makes 16-bit
    precision safe). ``threads`` is how many threads insert points (0: one
    per core); several threads make the graph depend on their timing, so the
    same points can give slightly different candidates from build to build,
    one thread gives the same graph every time.

    After a build, ``calibrate`` measures the top-10 overlap with exact search
    on ``probes`` queries and raises ``expansion_search`` (up to
    ``max_expansion``) until it reaches ``target_overlap`` (0.97, a margin
    over the promised 0.95); if it never does, the index is not used for
    that namespace.
    """

    threshold: int = DEFAULT_THRESHOLD
    connectivity: int = 16
    expansion_add: int = 64
    expansion_search: int = 64
    oversample: int = 4
    min_candidates: int = 40
    dtype: str = "bf16"
    threads: int = 0
    target_overlap: float = 0.97
    max_expansion: int = 1024
    probes: int = 100

    def candidates(self, k: int) -> int:
        """How many keys to fetch for ``k`` hits: ``max(2k, min(oversample * k, min_candidates))``."""
        return max(2 * k, min(self.oversample * k, self.min_candidates))


class AnnIndex:
    """One HNSW graph keyed by slab ANN keys (not thread-safe by itself)."""

    def __init__(self, dim: int, params: AnnParams, index: Any = None) -> None:
        module = _usearch()
        if module is None:
            raise RuntimeError("usearch is not available")
        self.dim = dim
        self.params = params
        if index is None:
            index = module.Index(
                ndim=dim,
                metric="ip",
                dtype=params.dtype,
                connectivity=params.connectivity,
                expansion_add=params.expansion_add,
            )
        index.expansion_search = params.expansion_search
        self._index = index
        #: Keys removed since the graph was built (tombstones degrade it).
        self.removed = 0
        self._doomed: list[int] = []  # removed, not yet taken out of the graph

    def __len__(self) -> int:
        return len(self._index) - len(self._doomed)

    def add(
        self,
        keys: npt.NDArray[np.uint64],
        scaled: npt.NDArray[np.float32],
        stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Add ``scaled`` (vectors pre-multiplied by importance_norm) in
        chunks; give up between chunks once ``stop()`` is true. Returns
        whether everything was added."""
        for start in range(0, int(keys.shape[0]), _CHUNK):
            if stop is not None and stop():
                return False
            end = start + _CHUNK
            self._index.add(keys[start:end], scaled[start:end], threads=self.params.threads)
        return True

    def remove(self, keys: list[int]) -> None:
        """Forget ``keys``; they leave the graph in batches (``_REMOVE_BATCH``)."""
        if keys:
            self._doomed.extend(keys)
            self.removed += len(keys)
            if len(self._doomed) >= _REMOVE_BATCH:
                self._drop_doomed()

    def _drop_doomed(self) -> None:
        if self._doomed:
            self._index.remove(np.asarray(self._doomed, dtype=np.uint64))
            self._doomed.clear()

    def contains(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        if keys.shape[0] == 0:
            return np.zeros(0, dtype=np.bool_)
        return np.asarray(self._index.contains(keys), dtype=np.bool_).reshape(keys.shape[0])

    def search(self, query: npt.NDArray[np.float32], k: int) -> list[int]:
        """Keys of up to ``params.candidates(k)`` candidates, best first."""
        if len(self._index) == 0:
            return []
        matches = self._index.search(query, self.params.candidates(k))
        keys: list[int] = np.asarray(matches.keys, dtype=np.uint64).tolist()
        return keys

    def needs_rebuild(self) -> bool:
        """True when tombstones outnumber half of the live points."""
        return self.removed > max(1_000, len(self) // 2)

    @property
    def expansion_search(self) -> int:
        return int(self._index.expansion_search)

    def calibrate(
        self, keys: npt.NDArray[np.uint64], scaled: npt.NDArray[np.float32], seed: int = 0
    ) -> float | None:
        """Tune ``expansion_search`` (times 1.5 per step, then bisected down
        to within 8 of the smallest passing value) until the top-10 overlap
        with exact search reaches ``target_overlap`` on ``probes`` queries;
        return the overlap, or None if ``max_expansion`` misses it.

        ``keys[i]`` holds ``scaled[i]``. A probe is the normalised midpoint of
        two random indexed points: in-distribution, but not itself indexed.
        """
        params = self.params
        n = int(scaled.shape[0])
        pairs = np.random.default_rng(seed).integers(0, n, size=(params.probes, 2))
        ends = scaled[pairs.ravel()]
        norms = np.linalg.norm(ends, axis=1, keepdims=True)
        ends = np.divide(ends, norms, out=np.zeros_like(ends), where=norms > 0)
        mids = ends[0::2] + ends[1::2]
        mid_norms = np.linalg.norm(mids, axis=1)
        probes = mids[mid_norms > 0] / mid_norms[mid_norms > 0, None]
        if probes.shape[0] == 0:
            return 1.0
        k = min(10, n)
        exact = np.maximum(probes @ scaled.T, 0.0)  # the base scores, since importance_norm > 0
        truth = [set(np.argpartition(-row, k - 1)[:k].tolist()) for row in exact]
        position = {key: i for i, key in enumerate(keys.tolist())}

        def overlap_at(expansion: int) -> float:
            self._index.expansion_search = expansion
            found = 0
            for probe, best, scores in zip(probes, truth, exact, strict=True):
                proposed = (position.get(key) for key in self.search(probe, k))
                top = sorted((i for i in proposed if i is not None), key=scores.__getitem__, reverse=True)
                found += len(best.intersection(top[:k]))
            return found / (k * int(probes.shape[0]))

        failed, expansion = 0, params.expansion_search
        overlap = overlap_at(expansion)
        while overlap < params.target_overlap:
            if expansion >= params.max_expansion:
                return None
            failed, expansion = expansion, min(params.max_expansion, expansion * 3 // 2)
            overlap = overlap_at(expansion)
        while failed and expansion - failed > 8:  # the smallest ef that passes, to within 8
            middle = (failed + expansion) // 2
            middle_overlap = overlap_at(middle)
            if middle_overlap >= params.target_overlap:
                expansion, overlap = middle, middle_overlap
            else:
                failed = middle
        self._index.expansion_search = expansion
        return overlap

    def save(self, path: str) -> None:
        """Write the graph as it is searched (keys still waiting to leave it
        included: once loaded, the store counts them as removed)."""
        self._index.save(path)

    @classmethod
    def restore(cls, path: str, dim: int, params: AnnParams) -> AnnIndex | None:
        """Load a saved index; None if it is unreadable or of another shape."""
        module = _usearch()
        if module is None:
            return None
        try:
            index = module.Index.restore(path)
        except Exception as exc:  # a damaged file only costs a rebuild
            log.warning("ignoring unreadable ANN index %s: %s", path, exc)
            return None
        if index is None or int(index.ndim) != dim:
            return None
        return cls(dim, params, index)
