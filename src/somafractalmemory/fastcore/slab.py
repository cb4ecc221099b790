"""The slab: one namespace's vectors in a contiguous float32 matrix.

Row ``r`` holds one point: its L2-normalised vector, ``importance_norm``,
memory type, version, payload and an ANN key (a fresh integer per write, so
an ANN hit can be checked against the current row). Deleting swaps the last
row into the hole, so rows ``0 .. size-1`` are always the live points and a
search is one matrix-vector product. Capacity doubles when full.

Search is exact: ``score = clip(slab @ q, 0, 1) * importance_norm`` for every
row, filters applied first, then the top ``k`` by ``(-score, id)``. See
``docs/FAST_CORE_MATH.md``.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInput
from ..models import MemoryType, matches_filters
from .blas import matvec

__all__ = ["TYPE_CODES", "Slab", "normalise", "prepare_points", "read_meta", "top_rows"]

F32 = npt.NDArray[np.float32]
#: ``types`` column encoding: index in this tuple.
TYPE_CODES: tuple[MemoryType, ...] = (MemoryType.EPISODIC, MemoryType.SEMANTIC)
_TYPE_CODE: dict[MemoryType, int] = {kind: code for code, kind in enumerate(TYPE_CODES)}
_MIN_CAPACITY = 64
#: With payload filters, look at this many times ``k`` best rows first.
_FILTER_WINDOW = 4
#: Searches that must pick score-0 rows by id before ``Slab.rows_by_id`` sorts the ids.
_ORDER_AFTER = 8
#: A query with at most ``dim / _SPARSE_QUERY`` non-zero components is
#: multiplied column by column (see ``Slab.cosines``).
_SPARSE_QUERY = 32
#: Version of the on-disk layout written by ``Slab.save``.
FORMAT = 1


def normalise(vector: Any, dim: int, field: str = "vector") -> F32:
    """``vector`` as a float32 array of shape ``(dim,)`` with norm 1 (or all zero)."""
    try:
        arr = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInput(field, "must be a sequence of numbers") from None
    if arr.shape != (dim,):
        raise InvalidInput(field, f"expected shape ({dim},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInput(field, "values must be finite")
    wide = arr.astype(np.float64)  # float32 squares under- or overflow for tiny or huge values
    norm = float(np.sqrt(wide @ wide))
    return (wide / norm).astype(np.float32) if norm > 0 else np.zeros(dim, dtype=np.float32)


def _normalise_batch(rows: Sequence[Any], dim: int) -> F32 | None:
    """All rows normalised at once, or None when any row is malformed (the
    caller then checks row by row, so the error names the point)."""
    if not rows or not all(isinstance(r, np.ndarray) and r.shape == (dim,) for r in rows):
        return None
    wide = np.stack(rows).astype(np.float64)
    if not np.all(np.isfinite(wide)):
        return None
    norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))
    out = np.zeros_like(wide)
    nonzero = norms > 0
    out[nonzero] = wide[nonzero] / norms[nonzero, None]
    result: F32 = out.astype(np.float32)
    return result


def _check_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where}.id", "must be a non-empty string")
    return value


def _check_importance(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise InvalidInput(f"{where}.importance_norm", f"must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_version(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{where}.version", f"must be an integer >= 0, got {value!r}")
    return value


def prepare_points(
    points: Sequence[Any], dim: int
) -> tuple[list[str], F32, F32, list[int], list[int], list[dict[str, Any]]]:
    """Validate a batch of ``VectorPoint``s (errors name ``points[i]``) and
    return its columns ``(ids, vectors, importance, types, versions,
    payloads)``, vectors normalised, keeping the last write of each id."""
    for i, point in enumerate(points):
        _check_id(point.id, f"points[{i}]")
    latest = {point.id: i for i, point in enumerate(points)}
    order = sorted(latest.values())
    batch = _normalise_batch([points[i].vector for i in order], dim)
    vectors = batch if batch is not None else np.empty((len(order), dim), dtype=np.float32)
    importance = np.empty(len(order), dtype=np.float32)
    types, versions, payloads = [], [], []
    for j, i in enumerate(order):
        point = points[i]
        imp, kind, version = point.importance_norm, point.memory_type, point.version
        # plain, valid values (the usual case) skip the checks that build error messages
        if batch is None or type(imp) is not float or not 0.0 <= imp <= 1.0 or kind not in _TYPE_CODE:
            where = f"points[{i}]"
            if batch is None:
                vectors[j] = normalise(point.vector, dim, f"{where}.vector")
            imp = _check_importance(imp, where)
            kind = MemoryType.parse(kind, f"{where}.memory_type")
        if type(version) is not int or version < 0:
            version = _check_version(version, f"points[{i}]")
        importance[j] = imp
        types.append(_TYPE_CODE[kind])
        versions.append(version)
        payloads.append(dict(point.payload or {}))
    return [points[i].id for i in order], vectors, importance, types, versions, payloads


def top_rows(
    scores: F32,
    k: int,
    ids: Sequence[str],
    by_id: Callable[[], npt.NDArray[np.intp] | None] | None = None,
) -> list[int]:
    """Indices of the ``k`` best entries of ``scores`` by ``(-score, ids[i])``.

    Entries below 0 are excluded (they mark filtered-out rows). ``ids[i]`` is
    the id of entry ``i``. Linear time plus ``O(k log k)``; ties at the cut
    are settled by id with a heap, never by a full sort. ``by_id``, when
    given, may return every index of ``scores`` ordered by id: rows scoring
    0 are then taken from it in one vectorised step instead of the heap
    (a query that few rows match has thousands of them).
    """
    if k <= 0:
        return []
    positive = np.flatnonzero(scores > 0)
    if len(positive) >= k:  # the cut falls among the positive scores: select there only
        sub = scores[positive]
        threshold = np.partition(sub, len(sub) - k)[len(sub) - k]
        above = positive[sub > threshold].tolist()
        ties = positive[sub == threshold].tolist()
        m = k
    else:  # every positive row, then rows scoring 0 by id
        m = min(k, int(np.count_nonzero(scores >= 0)))
        if m <= 0:
            return []
        above = positive.tolist()
        order = by_id() if by_id is not None else None
        if order is not None:
            zeros = order[scores[order] == 0][: m - len(above)].tolist()
            return _by_score_then_id(scores, above + zeros, ids)
        ties = np.flatnonzero(scores == 0).tolist()
    chosen = above + heapq.nsmallest(m - len(above), ties, key=ids.__getitem__)
    return _by_score_then_id(scores, chosen, ids)


def _by_score_then_id(scores: F32, chosen: list[int], ids: Sequence[str]) -> list[int]:
    values = scores[chosen].tolist()
    ranked = sorted(range(len(chosen)), key=lambda j: (-values[j], ids[chosen[j]]))
    return [chosen[j] for j in ranked]


class Slab:
    """The points of one namespace (not thread-safe; the store holds a lock)."""

    def __init__(self, dim: int, capacity: int = _MIN_CAPACITY) -> None:
        self.dim = dim
        self.size = 0
        capacity = max(capacity, _MIN_CAPACITY)
        self.vectors: F32 = np.zeros((capacity, dim), dtype=np.float32)
        self.importance: F32 = np.zeros(capacity, dtype=np.float32)
        self.types = np.zeros(capacity, dtype=np.int8)
        self.versions = np.zeros(capacity, dtype=np.int64)
        self.keys = np.zeros(capacity, dtype=np.uint64)
        self.ids: list[str] = []
        self.payloads: list[dict[str, Any]] = []
        self.rows: dict[str, int] = {}
        self.key_rows: dict[int, int] = {}
        self.next_key = 1
        self._by_id: npt.NDArray[np.intp] | None = None  # rows sorted by id, see ``rows_by_id``
        self._by_id_asks = 0

    def rows_by_id(self) -> npt.NDArray[np.intp] | None:
        """All rows ordered by id, for ``top_rows``. Built once
        ``_ORDER_AFTER`` searches have asked for it since the last insert or
        delete (an update keeps every row's id), then reused until the next
        one; None before that (sorting costs about as much as a dozen heap
        selections)."""
        if self._by_id is None:
            self._by_id_asks += 1
            if self._by_id_asks < _ORDER_AFTER:
                return None
            ids = self.ids
            self._by_id = np.asarray(sorted(range(self.size), key=ids.__getitem__), dtype=np.intp)
        return self._by_id

    def _rows_moved(self) -> None:
        self._by_id = None
        self._by_id_asks = 0

    @property
    def capacity(self) -> int:
        return int(self.vectors.shape[0])

    def _reserve(self, extra: int) -> None:
        need = self.size + extra
        if need <= self.capacity:
            return
        cap = max(self.capacity * 2, need)
        for name in ("vectors", "importance", "types", "versions", "keys"):
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self.size] = old[: self.size]
            setattr(self, name, new)

    def upsert(
        self,
        ids: Sequence[str],
        vectors: F32,
        importance: F32,
        types: Sequence[int],
        versions: Sequence[int],
        payloads: Sequence[dict[str, Any]],
    ) -> tuple[list[int], list[int], list[int]]:
        """Write rows (ids unique within the batch, vectors normalised).

        Returns ``(replaced_keys, written_rows, moved)``: the ANN keys that
        are no longer current, the rows now holding the batch, and the batch
        positions whose point is new or has a new vector or importance (a
        rewrite that keeps both, such as a payload-only update or a repeated
        store, keeps its ANN key: the index entry is still exact for it).
        """
        self._reserve(len(ids))
        size_before = self.size
        replaced: list[int] = []
        written: list[int] = []
        moved: list[int] = []
        for i, point_id in enumerate(ids):
            row = self.rows.get(point_id)
            if row is None:
                row = self.size
                self.size += 1
                self.ids.append(point_id)
                self.payloads.append(payloads[i])
                self.rows[point_id] = row
            else:
                self.payloads[row] = payloads[i]
                if self.importance[row] == importance[i] and np.array_equal(self.vectors[row], vectors[i]):
                    written.append(row)
                    continue
                old_key = int(self.keys[row])
                replaced.append(old_key)
                del self.key_rows[old_key]
            key = self.next_key
            self.next_key += 1
            self.keys[row] = key
            self.key_rows[key] = row
            written.append(row)
            moved.append(i)
        if self.size != size_before:
            self._rows_moved()
        rows = np.asarray(written, dtype=np.intp)
        self.vectors[rows] = vectors
        self.importance[rows] = importance
        self.types[rows] = np.asarray(types, dtype=np.int8)
        self.versions[rows] = np.asarray(versions, dtype=np.int64)
        return replaced, written, moved

    def delete(self, ids: Sequence[str]) -> list[int]:
        """Swap-remove the rows of ``ids``; return the ANN keys removed."""
        removed: list[int] = []
        for point_id in ids:
            row = self.rows.pop(point_id, None)
            if row is None:
                continue
            key = int(self.keys[row])
            del self.key_rows[key]
            removed.append(key)
            last = self.size - 1
            if row != last:
                for arr in (self.vectors, self.importance, self.types, self.versions, self.keys):
                    arr[row] = arr[last]
                self.ids[row] = self.ids[last]
                self.payloads[row] = self.payloads[last]
                self.rows[self.ids[row]] = row
                self.key_rows[int(self.keys[row])] = row
            self.ids.pop()
            self.payloads.pop()
            self.size = last
        if removed:
            self._rows_moved()
        return removed

    def cosines(self, query: F32, rows: npt.NDArray[np.intp] | None = None) -> F32:
        """Dot products of the (normalised) query with all or some rows.

        Through BLAS when it runs in one thread, else numpy's own loop
        (see ``blas``: a threaded BLAS is slow when the cores are busy).
        A query with few non-zero components (a short text under a lexical
        embedder) reads only those columns of the whole slab: the other
        components add exact zeros, and the slab is not read end to end
        (12,000 x 384: 0.08 ms for 3 columns against 0.4 ms for all).
        """
        if rows is not None:
            return matvec(self.vectors[rows], query)
        nonzero = np.flatnonzero(query)
        if nonzero.size * _SPARSE_QUERY <= self.dim:
            return matvec(self.vectors[: self.size, nonzero], query[nonzero])
        return matvec(self.vectors[: self.size], query)

    def base_scores(self, cos: F32, rows: npt.NDArray[np.intp] | None = None) -> F32:
        """``clip(cos, 0, 1) * importance_norm`` for all or some rows."""
        imp = self.importance[: self.size] if rows is None else self.importance[rows]
        score: F32 = np.clip(cos, 0.0, 1.0) * imp
        return score

    def search(
        self,
        query: F32,
        k: int,
        type_code: int | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[tuple[int, float, float]]:
        """Exact top ``k``: ``(row, score, cosine)``, best first."""
        if self.size == 0 or k <= 0:
            return []
        cos = self.cosines(query)
        score = self.base_scores(cos)
        if type_code is not None:
            score[self.types[: self.size] != type_code] = -1.0
        if filters:
            rows = self._filtered_rows(score, k, filters)
            picked = [int(rows[i]) for i in top_rows(score[rows], k, _Subset(self.ids, rows))]
        else:
            picked = top_rows(score, k, self.ids, self.rows_by_id)
        scores = score[picked].tolist()
        cosines = np.clip(cos[picked], -1.0, 1.0).tolist()
        return list(zip(picked, scores, cosines, strict=True))

    def _filtered_rows(self, score: F32, k: int, filters: Mapping[str, Any]) -> npt.NDArray[np.intp]:
        """Rows passing ``filters`` that contain the top ``k`` of those passing.

        The best ``4k`` rows (with ties) are checked first; the window grows
        fourfold until ``k`` rows pass or every candidate was checked. Any row
        outside the window scores strictly below every row inside it, so the
        top ``k`` passing rows are inside once ``k`` of them are found.
        """
        n = self.size
        valid = int(np.count_nonzero(score >= 0))
        checked: dict[int, bool] = {}
        window = min(valid, max(_FILTER_WINDOW * k, 64))
        while True:
            if window <= 0:
                return np.zeros(0, dtype=np.intp)
            threshold = np.partition(score, n - window)[n - window]
            inside = np.flatnonzero(score >= threshold)
            passing = []
            for row in inside.tolist():
                ok = checked.get(row)
                if ok is None:
                    ok = checked[row] = matches_filters(self.payloads[row], filters)
                if ok:
                    passing.append(row)
            if len(passing) >= k or window >= valid:
                return np.asarray(passing, dtype=np.intp)
            window = min(valid, window * _FILTER_WINDOW)

    def save(self, out: IO[bytes], namespace: str, extra: Mapping[str, Any] | None = None) -> None:
        """Write the live rows as an uncompressed ``.npz`` (no pickles); ``extra``
        JSON values join the metadata (``read_meta``)."""
        n = self.size
        meta = {
            **(extra or {}),
            "format": FORMAT,
            "namespace": namespace,
            "dim": self.dim,
            "next_key": self.next_key,
        }
        np.savez(
            out,
            vectors=self.vectors[:n],
            importance=self.importance[:n],
            types=self.types[:n],
            versions=self.versions[:n],
            keys=self.keys[:n],
            ids=_json_bytes(self.ids),  # JSON, not a numpy string array: keeps any character
            payloads=_json_bytes(self.payloads),
            meta=_json_bytes(meta),
        )

    @classmethod
    def load(cls, source: IO[bytes]) -> tuple[str, Slab]:
        """Read what ``save`` wrote; returns ``(namespace, slab)``."""
        with np.load(source, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes())
            if meta.get("format") != FORMAT:
                raise ValueError(f"unknown slab format {meta.get('format')!r}")
            ids = [str(i) for i in json.loads(data["ids"].tobytes())]
            slab = cls(int(meta["dim"]), capacity=len(ids))
            n = slab.size = len(ids)
            for name in ("vectors", "importance", "types", "versions", "keys"):
                getattr(slab, name)[:n] = data[name]
            payloads = json.loads(data["payloads"].tobytes())
        if len(payloads) != n or slab.vectors.shape[1] != slab.dim:
            raise ValueError("slab arrays do not agree in length")
        slab.ids = ids
        slab.payloads = payloads
        slab.rows = {point_id: row for row, point_id in enumerate(ids)}
        slab.key_rows = {int(key): row for row, key in enumerate(slab.keys[:n].tolist())}
        slab.next_key = int(meta["next_key"])
        return str(meta["namespace"]), slab


def read_meta(source: IO[bytes]) -> dict[str, Any]:
    """The metadata of a file ``Slab.save`` wrote, without reading its arrays."""
    with np.load(source, allow_pickle=False) as data:
        meta: dict[str, Any] = json.loads(data["meta"].tobytes())
    return meta


def _json_bytes(value: Any) -> npt.NDArray[np.uint8]:
    text = json.dumps(value, separators=(",", ":"), default=str)  # payloads arrive JSON-clean
    return np.frombuffer(text.encode(), dtype=np.uint8)


class _Subset(Sequence[str]):
    """``ids`` seen through a row selection, without copying the strings."""

    def __init__(self, ids: list[str], rows: npt.NDArray[np.intp]) -> None:
        self._ids = ids
        self._rows = rows

    def __len__(self) -> int:
        return int(self._rows.shape[0])

    def __getitem__(self, index: Any) -> Any:
        return self._ids[int(self._rows[index])]
