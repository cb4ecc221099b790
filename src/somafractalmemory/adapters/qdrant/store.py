"""``QdrantVectorStore``: the vector port on a Qdrant server or its local mode.

Layout
    One collection per namespace, named by :func:`collection_name`
    (``collection_prefix`` + the namespace with every character outside
    ``[A-Za-z0-9-]`` written as ``_`` + two hex digits per UTF-8 byte, so
    ``ns_1`` -> ``sfm_ns_5f1``; names over 200 characters keep a readable
    head and end in a SHA-256 digest). Collections are created on first
    write with distance DOT; on a server they get payload indexes on
    ``memory_type`` and on ``payload.<key>`` for each ``indexed_keys`` entry.

Points
    Point id = memory id (a UUID string). The stored vector is the
    L2-normalised vector times ``importance_norm``, so with a normalised
    query Qdrant's DOT score *is* ``cosine * importance_norm``. The point
    payload is ``{"importance_norm", "memory_type", "version", "payload"}``
    (the memory payload nested under ``payload``).

Search
    Score = ``max(0, qdrant score)``; cosine = score / importance_norm.
    Filters are pushed down (see ``filters``) so they apply before the top-k
    cut; when the pushed filter is only a superset, candidates are checked
    with ``models.matches_filters`` and more are fetched until ``k`` match or
    the collection is exhausted. Exact ties at the k-th score are fetched
    too, so ties break by id as in every adapter; points scoring 0 (cosine
    <= 0) come after, by id, from a scroll in id order. On a server, search
    is HNSW-approximate above Qdrant's indexing threshold unless
    ``exact_search=True``; local mode is always exact.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import BackendUnavailable, ConfigurationError, InvalidInput
from ...interfaces.storage import Filters, Vector, VectorHit, VectorPoint
from ...models import MemoryType, matches_filters
from .client import Connection, connect
from .filters import PAYLOAD_KEY, TYPE_KEY, FilterPlan, plan_filter

try:
    from qdrant_client import models as qm
except ImportError as exc:  # pragma: no cover - client.py raises first
    from ...errors import MissingDependency

    raise MissingDependency("qdrant-client", "qdrant") from exc

__all__ = ["QdrantVectorStore", "collection_name"]

_SAFE = re.compile(r"[A-Za-z0-9-]")
_MAX_NAME = 200
_PAGE = 1000
_MAX_FETCH = 10_000
_INDEX_TYPES = {"keyword", "integer", "float", "bool", "datetime", "text", "uuid"}
_IMP, _VERSION = "importance_norm", "version"


def collection_name(prefix: str, namespace: str) -> str:
    """The collection holding ``namespace``: injective and safe as a server
    collection name and as a directory name in local mode."""
    body = "".join(
        ch if _SAFE.fullmatch(ch) else "".join(f"_{b:02x}" for b in ch.encode()) for ch in namespace
    )
    name = prefix + body
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(namespace.encode()).hexdigest()[:40]
        name = f"{name[: _MAX_NAME - 43]}_h_{digest}"
    return name


class QdrantVectorStore:
    """Vectors of memories in Qdrant (see the module docstring)."""

    name = "qdrant"

    def __init__(
        self,
        *,
        dim: int,
        url: str | None = None,
        host: str | None = None,
        port: int = 6333,
        grpc_port: int = 6334,
        path: str | os.PathLike[str] | None = None,
        location: str | None = None,
        api_key: str | None = None,
        https: bool | None = None,
        verify: bool | str = True,
        prefer_grpc: bool = False,
        timeout: float = 10.0,
        collection_prefix: str = "sfm_",
        indexed_keys: Mapping[str, str] | None = None,
        exact_search: bool = False,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 65536:
            raise ConfigurationError(f"Qdrant vector dim must be an integer 1-65536, got {dim!r}")
        if not isinstance(collection_prefix, str) or not re.fullmatch(
            r"[A-Za-z0-9_-]{1,64}", collection_prefix
        ):
            raise ConfigurationError(
                f"Qdrant collection_prefix must be 1-64 of A-Z a-z 0-9 _ -, got {collection_prefix!r}"
            )
        keys = dict({"tags": "keyword"} if indexed_keys is None else indexed_keys)
        for key, kind in keys.items():
            if kind not in _INDEX_TYPES or not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", key):
                raise ConfigurationError(f"Qdrant indexed_keys: cannot index {key!r} as {kind!r}")
        self.dim = dim
        self.prefix = collection_prefix
        self.indexed_keys = keys
        self._params = qm.SearchParams(exact=True) if exact_search else None
        self._known: set[str] = set()
        self._closed = False
        self._conn: Connection = connect(
            url=url,
            host=host,
            port=port,
            grpc_port=grpc_port,
            path=path,
            location=location,
            api_key=api_key,
            https=https,
            verify=verify,
            prefer_grpc=prefer_grpc,
            timeout=timeout,
        )
        if not self._conn.local:
            try:
                self.health()  # fail at start, with the setting to fix
            except BackendUnavailable:
                self._conn.client.close()
                raise

    # -- writes -----------------------------------------------------------

    def upsert(self, namespace: str, points: Sequence[VectorPoint]) -> None:
        latest = {self._point_id(p.id, "points.id"): p for p in points}  # last one wins
        if not latest:
            return
        rows = self._rows([p.vector for p in latest.values()], "points.vector")
        structs = []
        for row, (pid, p) in zip(rows, latest.items(), strict=True):
            imp = _importance(p.importance_norm)
            structs.append(
                qm.PointStruct(
                    id=pid,
                    vector=(row * np.float32(imp)).tolist(),
                    payload={
                        _IMP: imp,
                        TYPE_KEY: MemoryType.parse(p.memory_type).value,
                        _VERSION: int(p.version),
                        PAYLOAD_KEY: p.payload,
                    },
                )
            )
        name = self._collection(namespace, create=True) or ""
        with self._call("upsert"):
            self._conn.client.upsert(name, points=structs, wait=True)

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        valid = [i for i in ids if _is_uuid(i)]  # anything else was never stored
        name = self._collection(namespace)
        if not valid or name is None:
            return
        with self._call("delete"):
            self._conn.client.delete(name, points_selector=qm.PointIdsList(points=list(valid)), wait=True)

    # -- reads ------------------------------------------------------------

    def search(
        self,
        namespace: str,
        vector: Vector,
        k: int,
        memory_type: MemoryType | None = None,
        filters: Filters | None = None,
    ) -> list[VectorHit]:
        query = self._rows([vector], "vector")[0]
        if k <= 0:
            return []
        plan = plan_filter(MemoryType.parse(memory_type) if memory_type is not None else None, filters)
        name = self._collection(namespace)
        if name is None or plan.empty:
            return []
        hits = self._positive(name, query, k, plan, filters) if query.any() else []
        if len(hits) < k:
            hits += self._zero(name, query, k - len(hits), plan, filters, {h.id for h in hits})
        return hits

    def cosines(self, namespace: str, vector: Vector, ids: Sequence[str]) -> dict[str, float]:
        query = self._rows([vector], "vector")[0]
        valid = list(dict.fromkeys(i for i in ids if _is_uuid(i)))
        name = self._collection(namespace)
        if not valid or name is None:
            return {}
        with self._call("retrieve"):
            records = self._conn.client.retrieve(name, ids=valid, with_payload=False, with_vectors=True)
        return {str(r.id): _cosine(query, r.vector) for r in records}

    def versions(self, namespace: str) -> dict[str, int]:
        name = self._collection(namespace)
        out: dict[str, int] = {}
        offset: Any = None
        while name is not None:
            with self._call("scroll"):
                records, offset = self._conn.client.scroll(
                    name, limit=_PAGE, offset=offset, with_payload=[_VERSION], with_vectors=False
                )
            out.update({str(r.id): int((r.payload or {}).get(_VERSION, 1)) for r in records})
            if offset is None:
                break
        return out

    def count(self, namespace: str) -> int:
        name = self._collection(namespace)
        if name is None:
            return 0
        with self._call("count"):
            return int(self._conn.client.count(name, exact=True).count)

    # -- lifecycle --------------------------------------------------------

    def flush(self) -> None:
        """Every write waits for Qdrant's acknowledgement; nothing is pending."""

    def health(self) -> None:
        with self._call("health check"):
            self._conn.client.get_collections()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self._conn.call("close"):
                self._conn.client.close()

    # -- internals --------------------------------------------------------

    def _positive(
        self, name: str, query: npt.NDArray[np.float32], k: int, plan: FilterPlan, filters: Filters | None
    ) -> list[VectorHit]:
        """Hits with a score > 0: the top ``k`` plus every exact tie of the k-th."""
        selector = [_IMP] if plan.exact else [_IMP, PAYLOAD_KEY]
        limit = k + 1 if plan.exact else min(max(2 * k, k + 16), _MAX_FETCH)
        offset = 0
        found: dict[str, VectorHit] = {}
        while True:
            with self._call("search"):
                points = self._conn.client.query_points(
                    name,
                    query=query.tolist(),
                    query_filter=plan.filter,
                    limit=limit,
                    offset=offset,
                    with_payload=selector,
                    with_vectors=False,
                    search_params=self._params,
                ).points
            done = len(points) < limit
            for p in points:
                if p.score <= 0:
                    done = True
                    break
                payload = p.payload or {}
                if plan.exact or matches_filters(payload.get(PAYLOAD_KEY) or {}, filters):
                    found[str(p.id)] = VectorHit(str(p.id), float(p.score), _unscale(p.score, payload))
            ranked = sorted(found.values(), key=lambda h: (-h.score, h.id))
            if done or (len(ranked) >= k and points[-1].score < ranked[k - 1].score):
                return ranked[:k]
            offset += limit
            limit = min(limit * 2, _MAX_FETCH)

    def _zero(
        self,
        name: str,
        query: npt.NDArray[np.float32],
        need: int,
        plan: FilterPlan,
        filters: Filters | None,
        skip: set[str],
    ) -> list[VectorHit]:
        """``need`` matching points scoring 0 (cosine <= 0), smallest ids first."""
        selector = [_IMP] if plan.exact else [_IMP, PAYLOAD_KEY]
        out: list[VectorHit] = []
        offset: Any = None
        while len(out) < need:
            with self._call("scroll"):
                records, offset = self._conn.client.scroll(
                    name,
                    scroll_filter=plan.filter,
                    limit=min(need + len(skip) + 1, _MAX_FETCH),
                    offset=offset,
                    with_payload=selector,
                    with_vectors=True,
                )
            for r in records:
                payload = r.payload or {}
                if str(r.id) in skip or not (
                    plan.exact or matches_filters(payload.get(PAYLOAD_KEY) or {}, filters)
                ):
                    continue
                out.append(VectorHit(str(r.id), 0.0, _cosine(query, r.vector)))
                if len(out) == need:
                    break
            if offset is None:
                break
        return out

    def _collection(self, namespace: str, create: bool = False) -> str | None:
        """The namespace's collection name, or None when it does not exist
        (it is created when ``create``); checks its vector settings once."""
        if self._closed:
            raise BackendUnavailable("Qdrant", "the vector store is closed", setting=self._conn.setting)
        if not isinstance(namespace, str) or not namespace:
            raise InvalidInput("namespace", "must be a non-empty string")
        name = collection_name(self.prefix, namespace)
        if name in self._known:
            return name
        client = self._conn.client
        with self._call("collection lookup"):
            exists = client.collection_exists(name)
        if not exists and not create:
            return None
        if not exists:
            self._create(name)
        with self._call("collection lookup"):
            params = client.get_collection(name).config.params.vectors
        if (
            not isinstance(params, qm.VectorParams)
            or params.size != self.dim
            or params.distance != qm.Distance.DOT
        ):
            raise ConfigurationError(
                f"Qdrant collection {name!r} holds other vectors ({params}); this store needs "
                f"{self.dim} dimensions with DOT distance: reindex, or use another collection_prefix"
            )
        self._known.add(name)
        return name

    def _create(self, name: str) -> None:
        client = self._conn.client
        try:
            with self._call("create collection"):
                client.create_collection(
                    name, vectors_config=qm.VectorParams(size=self.dim, distance=qm.Distance.DOT)
                )
        except BackendUnavailable:
            with self._call("collection lookup"):
                if not client.collection_exists(name):  # else: another writer created it first
                    raise
        if self._conn.local:
            return  # payload indexes have no effect in local mode
        fields = {TYPE_KEY: "keyword", **{f"{PAYLOAD_KEY}.{k}": t for k, t in self.indexed_keys.items()}}
        with self._call("create payload index"):
            for field, kind in fields.items():
                client.create_payload_index(name, field, field_schema=qm.PayloadSchemaType(kind), wait=True)

    def _rows(self, vectors: Sequence[Any], field: str) -> npt.NDArray[np.float32]:
        """Vectors as float32 rows, checked and L2-normalised (zero stays zero)."""
        try:
            rows = np.asarray(np.stack([np.asarray(v, dtype=np.float64) for v in vectors]), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(field, f"must be numeric vectors of {self.dim} values") from exc
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise InvalidInput(field, f"must have {self.dim} values, got shape {rows.shape[1:]}")
        if not np.isfinite(rows).all():
            raise InvalidInput(field, "values must be finite")
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        unit: npt.NDArray[np.float64] = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
        return unit.astype(np.float32)

    def _point_id(self, value: Any, field: str) -> str:
        if not _is_uuid(value):
            raise InvalidInput(field, f"must be a memory id (a lowercase UUID string), got {value!r}")
        return str(value)

    def _call(self, what: str) -> AbstractContextManager[None]:
        if self._closed:
            raise BackendUnavailable("Qdrant", "the vector store is closed", setting=self._conn.setting)
        return self._conn.call(what)

    def __repr__(self) -> str:
        return f"QdrantVectorStore({self._conn.target!r}, dim={self.dim}, prefix={self.prefix!r})"


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _importance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise InvalidInput("points.importance_norm", f"must be a finite number >= 0, got {value!r}")
    return float(value)


def _unscale(score: float, payload: Mapping[str, Any]) -> float:
    imp = float(payload.get(_IMP) or 0.0)
    return float(score) / imp if imp > 0 else 0.0


def _cosine(query: npt.NDArray[np.float32], stored: Any) -> float:
    """Cosine of the query (normalised) with a stored, importance-scaled vector."""
    if not isinstance(stored, list):
        return 0.0
    vec = np.asarray(stored, dtype=np.float64)
    norm = float(np.linalg.norm(vec))
    return float(np.dot(query.astype(np.float64), vec) / norm) if norm > 0 else 0.0
