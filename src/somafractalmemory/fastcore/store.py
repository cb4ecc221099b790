"""``FastCoreVectorStore``: the in-process vector store (adapter name ``fast``).

One :class:`~.slab.Slab` per namespace answers every search exactly; when a
namespace holds at least ``AnnParams.threshold`` points and a search has no
filters, an HNSW index (:mod:`.ann`) proposes candidates that are verified
and re-scored from the slab. The index is built on first need - in a
background thread by default, exact search serving meanwhile - and then
kept up to date on every write.

With ``path``, ``flush()`` (and ``close()``) write each changed namespace
as one ``.slab.npz`` file and, when it exists, its ANN index as
``.ann.usearch``, each atomically (temporary file + ``os.replace``); opening
the store loads them. One lock guards everything, so threads may share it.

Several processes may share ``path`` (``ISnapshotIndex``, see
``checkpoint.py``): files are read under a shared and written under an
exclusive directory lock; a slab file records the change-feed position it
reflects (``set_checkpoint``) and is only replaced by a view at least as
new; an ANN file is written with its slab, or alone only beside the very
slab it was built from (a random ``token`` names each slab file).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BackendUnavailable, ConfigurationError, InvalidInput
from ..interfaces.storage import Filters, Vector, VectorHit, VectorPoint
from ..models import MemoryType, validate_filters, validate_namespace
from .ann import AnnIndex, AnnParams, ann_available
from .checkpoint import Checkpoint, file_checkpoint, new_token, supersedes
from .files import ANN_SUFFIX, SLAB_SUFFIX, atomic_write, dir_lock, file_stem, fsync_replace
from .slab import TYPE_CODES, Slab, normalise, prepare_points, read_meta, top_rows

__all__ = ["FastCoreVectorStore"]

log = logging.getLogger(__name__)
#: An upsert of more points than this (and a quarter of the namespace) drops
#: the ANN index instead of extending it; the next search rebuilds it.
_BULK = 10_000


class _Space:
    """A namespace: its slab, its ANN index (if built) and flush state."""

    def __init__(self, slab: Slab) -> None:
        self.slab = slab
        self.ann: AnnIndex | None = None
        self.builder: threading.Thread | None = None
        self.dirty = False
        self.ann_saved = False
        #: ANN stays off while the namespace is smaller than this (set when
        #: a build could not reach the target overlap).
        self.ann_off_below = 0
        #: The change-feed position of the file it was loaded from, and that file's token.
        self.checkpoint: Checkpoint | None = None
        self.token: str | None = None


class FastCoreVectorStore:
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
        self._use_ann = ann and ann_available()
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
            replaced, rows = space.slab.upsert(ids, vectors, importance, types, versions, payloads)
            if space.ann is not None and len(rows) > max(_BULK, space.slab.size // 4):
                space.ann = None  # a bulk load: rebuild in the background, not under the lock
            elif space.ann is not None:
                space.ann.remove(replaced)
                space.ann.add(space.slab.keys[rows], vectors * importance[:, None])
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
            and k * self._params.oversample < size
        )

    def _ann_search(self, namespace: str, space: _Space, query: Vector, k: int) -> list[VectorHit] | None:
        """Verified, exactly re-scored ANN hits; None means "use exact search"."""
        if space.ann is None or space.ann.needs_rebuild():
            self._start_build(namespace, space)
        if space.ann is None or not np.any(query):
            return None
        slab = space.slab
        found = (slab.key_rows.get(key) for key in space.ann.search(query, k))
        rows = list(dict.fromkeys(r for r in found if r is not None))  # current keys only
        if len(rows) < k:
            return None
        picked = np.asarray(rows, dtype=np.intp)
        cos = slab.cosines(query, picked)
        score = slab.base_scores(cos, picked)
        best = top_rows(score, k, [slab.ids[r] for r in rows])
        if score[best[-1]] <= score.min():  # the k-th score may tie with rows never proposed
            return None  # (always so for score 0): only exact search can settle ties by id
        return [
            VectorHit(slab.ids[rows[i]], float(score[i]), float(np.clip(cos[i], -1.0, 1.0))) for i in best
        ]

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

    def checkpoints(self) -> dict[str, Checkpoint | None]:
        with self._lock:
            return {ns: space.checkpoint for ns, space in self._spaces.items()}

    def set_checkpoint(self, feed_id: str, seq: int) -> None:
        with self._lock:
            self._mark = (str(feed_id), int(seq))

    def discard(self, namespace: str) -> None:
        with self._lock:
            if self._spaces.pop(namespace, None) is not None:
                self._discarded.add(namespace)

    def flush(self) -> None:
        with self._lock:
            self._check_open()
            self._flush()

    def _flush(self) -> None:
        if self._path is None:
            return
        try:
            with dir_lock(self._path):
                for namespace, space in self._spaces.items():
                    self._flush_space(namespace, space)
                for namespace in self._discarded - set(self._spaces):
                    self._drop_files(namespace)
                self._discarded.clear()
        except OSError as exc:
            raise BackendUnavailable("fast core", f"cannot write {self._path}: {exc}") from exc

    def _files(self, namespace: str) -> tuple[Path, Path]:
        assert self._path is not None
        base = self._path / file_stem(namespace)
        return Path(f"{base}{SLAB_SUFFIX}"), Path(f"{base}{ANN_SUFFIX}")

    def _on_disk(self, slab_file: Path) -> dict[str, Any] | None:
        try:
            with open(slab_file, "rb") as source:
                return read_meta(source)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError):
            return {}  # unreadable: anything replaces it

    def _flush_space(self, namespace: str, space: _Space) -> None:
        """Write one namespace's files (under the directory lock)."""
        if not space.dirty and (space.ann is None or space.ann_saved):
            return
        slab_file, ann_file = self._files(namespace)
        meta = self._on_disk(slab_file)
        if space.dirty:
            if meta is not None and supersedes(file_checkpoint(meta), self._mark):
                return  # another process wrote a newer view; ours is not saved
            ann_file.unlink(missing_ok=True)  # a crash before the new one is written leaves none
            token = new_token()
            extra = {"token": token, "checkpoint": None if self._mark is None else list(self._mark)}
            atomic_write(slab_file, functools.partial(space.slab.save, namespace=namespace, extra=extra))
            space.dirty, space.token = False, token
        elif meta is None or meta.get("token") != space.token:
            return  # the file on disk is not the slab this ANN index was built from
        if space.ann is not None:
            tmp = Path(f"{ann_file}.tmp")
            space.ann.save(str(tmp))
            fsync_replace(tmp, ann_file)
            space.ann_saved = True

    def _drop_files(self, namespace: str) -> None:
        slab_file, ann_file = self._files(namespace)
        meta = self._on_disk(slab_file)
        if meta is not None and not supersedes(file_checkpoint(meta), self._mark):
            slab_file.unlink(missing_ok=True)
            ann_file.unlink(missing_ok=True)

    def _load(self, root: Path) -> None:
        if not root.exists():
            return
        with dir_lock(root, exclusive=False):
            for slab_file in sorted(root.glob(f"*{SLAB_SUFFIX}")):
                self._load_file(slab_file)

    def _load_file(self, slab_file: Path) -> None:
        try:
            with open(slab_file, "rb") as source:
                namespace, slab = Slab.load(source)
            with open(slab_file, "rb") as source:
                meta = read_meta(source)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigurationError(f"cannot read vector slab {slab_file}: {exc}") from exc
        if slab.dim != self.dim:
            raise ConfigurationError(
                f"{slab_file} holds {slab.dim}-d vectors but this store is {self.dim}-d; "
                "re-embed with `soma reindex` or point the store at another path"
            )
        space = self._spaces[namespace] = _Space(slab)
        space.checkpoint, space.token = file_checkpoint(meta), meta.get("token")
        ann_file = Path(str(slab_file)[: -len(SLAB_SUFFIX)] + ANN_SUFFIX)
        if self._use_ann and ann_file.exists():
            index = AnnIndex.restore(str(ann_file), self.dim, self._params)
            if index is not None:
                space.ann_saved = self._install(space, index, None) == 0
                scaled = slab.vectors[: slab.size] * slab.importance[: slab.size, None]
                if index.calibrate(slab.keys[: slab.size], scaled) is None:
                    space.ann, space.ann_off_below = None, 2 * slab.size

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
