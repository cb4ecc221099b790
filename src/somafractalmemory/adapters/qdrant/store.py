"""``QdrantVectorStore``: the vector port on a Qdrant server or its local mode.

Layout
    One collection per namespace, named by :func:`collection_name`
    (``collection_prefix`` + the namespace with every character outside
    ``[A-Za-z0-9-]`` written as ``_`` + two hex digits per UTF-8 byte, so
    ``ns_1`` -> ``sfm_ns_5f1``; names over 200 characters keep a readable
    head and end in a SHA-256 digest). Collections are created on first
    write with distance DOT; on a server they get payload indexes on
    ``memory_type``, ``plain_id`` and ``payload.<key>`` for each
    ``indexed_keys`` entry (default: ``tags`` as keyword).

Points
    Point id = memory id (a UUID string). Any other id string (the port
    allows them) is stored under its UUIDv5 and kept in the payload as
    ``id``, with ``plain_id: true``. The stored vector is the
    L2-normalised vector times ``importance_norm``, so with a normalised
    query Qdrant's DOT score *is* ``cosine * importance_norm``. The point
    payload is ``{"importance_norm", "memory_type", "version", "payload"}``
    (the memory payload nested under ``payload``). An ``importance_norm``
    of 0 stores a zero vector: the point scores 0 and reports cosine 0
    (``models.importance_norm`` never gives 0).

Search
    Score = ``max(0, qdrant score)``; cosine = score / importance_norm. On a
    server, filters are pushed down (see ``filters``) so they apply before
    the top-k cut, and checked again with ``models.matches_filters`` where
    Qdrant's matching is only a superset. Local mode evaluates filters in
    Python at ~50 µs per point, far slower than that check, so by default
    (``push_filters=None``) it searches unfiltered and checks candidates
    client side; the answers are the same (see ``search`` for the ranking).
    On a server, search is HNSW-approximate above Qdrant's indexing
    threshold unless ``exact_search=True``; local mode is always exact.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import BackendUnavailable, ConfigurationError, InvalidInput
from ...interfaces.storage import Filters, Vector, VectorHit, VectorPoint
from ...models import MemoryType, validate_filters, validate_namespace
from .client import Connection, connect
from .filters import PAYLOAD_KEY, TYPE_KEY, FilterPlan, plan_filter
from .search import IMP, MEMORY_ID, PAGE, PLAIN, VERSION, Request, cosine, memory_id_of, point_id, run

try:
    from qdrant_client import models as qm
except ImportError as exc:  # pragma: no cover - client.py raises first
    from ...errors import MissingDependency

    raise MissingDependency("qdrant-client", "qdrant") from exc

__all__ = ["QdrantVectorStore", "collection_name"]

_SAFE = re.compile(r"[A-Za-z0-9-]")
_MAX_NAME = 200
_INDEX_TYPES = {"keyword", "integer", "float", "bool", "datetime", "text", "uuid"}


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
        push_filters: bool | None = None,
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
        self._plain: dict[str, bool] = {}  # local mode: does a collection hold non-UUID ids
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
        self._push = not self._conn.local if push_filters is None else bool(push_filters)
        if not self._conn.local:
            try:
                self.health()  # fail at start, with the setting to fix
            except BackendUnavailable:
                self._conn.client.close()
                raise

    # -- writes -----------------------------------------------------------

    def upsert(self, namespace: str, points: Sequence[VectorPoint]) -> None:
        validate_namespace(namespace)
        structs: dict[str, qm.PointStruct] = {}
        for i, p in enumerate(points):
            where = f"points[{i}]"
            mid = _check_id(p.id, where)
            imp = _importance(p.importance_norm, where)
            payload: dict[str, Any] = {
                IMP: imp,
                TYPE_KEY: MemoryType.parse(p.memory_type, f"{where}.memory_type").value,
                VERSION: _version(p.version, where),
                PAYLOAD_KEY: dict(p.payload or {}),
            }
            pid = point_id(mid)
            if pid != mid:
                payload.update({MEMORY_ID: mid, PLAIN: True})
            vector = (self._unit(p.vector, f"{where}.vector") * np.float32(imp)).tolist()
            structs.pop(mid, None)  # the last write of an id wins
            structs[mid] = qm.PointStruct(id=pid, vector=vector, payload=payload)
        if not structs:
            return
        name = self._ensure(namespace)
        with self._call("upsert"):
            self._conn.client.upsert(name, points=list(structs.values()), wait=True)
        if name in self._plain and any(s.payload and PLAIN in s.payload for s in structs.values()):
            self._plain[name] = True

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        pids = [point_id(i) for i in ids if isinstance(i, str) and i]  # anything else was never stored
        name = self._collection(namespace)
        if not pids or name is None:
            return
        with self._call("delete"):
            self._conn.client.delete(name, points_selector=qm.PointIdsList(points=list(pids)), wait=True)

    # -- reads ------------------------------------------------------------

    def search(
        self,
        namespace: str,
        vector: Vector,
        k: int,
        memory_type: MemoryType | None = None,
        filters: Filters | None = None,
    ) -> list[VectorHit]:
        query = self._unit(vector, "vector")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InvalidInput("k", f"must be an integer >= 0, got {k!r}")
        clean = validate_filters(filters)
        wanted = None if memory_type is None else MemoryType.parse(memory_type)
        plan = plan_filter(wanted, clean)
        name = self._collection(namespace)
        if k == 0 or name is None or plan.empty:
            return []
        if not self._push and plan.filter is not None:
            plan = FilterPlan(None, exact=False)
        request = Request(self._conn, name, query, plan, wanted, clean, self._params)
        return run(request, k, self._plain_ids(name))

    def cosines(self, namespace: str, vector: Vector, ids: Sequence[str]) -> dict[str, float]:
        query = self._unit(vector, "vector")
        wanted = {point_id(i): i for i in ids if isinstance(i, str) and i}
        name = self._collection(namespace)
        if not wanted or name is None:
            return {}
        with self._call("retrieve"):
            records = self._conn.client.retrieve(
                name, ids=list(wanted), with_payload=False, with_vectors=True
            )
        return {wanted[str(r.id)]: cosine(query, r.vector) for r in records if str(r.id) in wanted}

    def versions(self, namespace: str, ids: Sequence[str] | None = None) -> dict[str, int]:
        name = self._collection(namespace)
        if name is None:
            return {}
        if ids is None:
            return {mid: v for mid, v, _ in self._scan(name, [VERSION, MEMORY_ID, PLAIN])}
        wanted = {point_id(i): i for i in ids if isinstance(i, str) and i}
        if not wanted:
            return {}
        with self._call("retrieve"):
            records = self._conn.client.retrieve(name, ids=list(wanted), with_payload=[VERSION])
        return {
            wanted[str(r.id)]: int((r.payload or {}).get(VERSION, 1)) for r in records if str(r.id) in wanted
        }

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

    def __repr__(self) -> str:
        return f"QdrantVectorStore({self._conn.target!r}, dim={self.dim}, prefix={self.prefix!r})"

    # -- collections ------------------------------------------------------

    def _collection(self, namespace: str) -> str | None:
        """The namespace's collection, or None when it does not exist yet."""
        return self._open(namespace, create=False)

    def _ensure(self, namespace: str) -> str:
        """The namespace's collection, created if needed."""
        return self._open(namespace, create=True) or ""

    def _open(self, namespace: str, create: bool) -> str | None:
        """Look the collection up (creating it when ``create``); its vector
        settings are checked once per process."""
        if self._closed:
            raise BackendUnavailable("Qdrant", "the vector store is closed", setting=self._conn.setting)
        validate_namespace(namespace)
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
        fields = {
            TYPE_KEY: "keyword",
            PLAIN: "bool",
            **{f"{PAYLOAD_KEY}.{k}": t for k, t in self.indexed_keys.items()},
        }
        with self._call("create payload index"):
            for field, kind in fields.items():
                client.create_payload_index(name, field, field_schema=qm.PayloadSchemaType(kind), wait=True)

    def _plain_ids(self, name: str) -> bool | None:
        """Whether the collection holds non-UUID ids: tracked in local mode
        (one process owns the data), asked of the server when needed (None)."""
        if not self._conn.local:
            return None
        if name not in self._plain:
            self._plain[name] = any(plain for _, _, plain in self._scan(name, [PLAIN, MEMORY_ID]))
        return self._plain[name]

    def _scan(self, name: str, fields: list[str]) -> list[tuple[str, int, bool]]:
        """``(memory id, version, plain)`` of every point, a page at a time."""
        out: list[tuple[str, int, bool]] = []
        offset: Any = None
        while True:
            with self._call("scroll"):
                records, offset = self._conn.client.scroll(
                    name, limit=PAGE, offset=offset, with_payload=fields, with_vectors=False
                )
            for r in records:
                payload = r.payload or {}
                out.append((memory_id_of(r), int(payload.get(VERSION, 1)), bool(payload.get(PLAIN))))
            if offset is None:
                return out

    # -- checks -----------------------------------------------------------

    def _unit(self, vector: Any, field: str) -> npt.NDArray[np.float32]:
        """``vector`` checked and L2-normalised as float32 (zero stays zero)."""
        try:
            arr = np.asarray(vector, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInput(field, "must be a sequence of numbers") from None
        if arr.shape != (self.dim,):
            raise InvalidInput(field, f"expected shape ({self.dim},), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise InvalidInput(field, "values must be finite")
        norm = float(np.linalg.norm(arr))
        return (arr / norm if norm > 0 else arr).astype(np.float32)

    def _call(self, what: str) -> AbstractContextManager[None]:
        if self._closed:
            raise BackendUnavailable("Qdrant", "the vector store is closed", setting=self._conn.setting)
        return self._conn.call(what)


def _check_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where}.id", f"must be a non-empty string, got {value!r}")
    return value


def _importance(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InvalidInput(f"{where}.importance_norm", f"must be a number in [0, 1], got {value!r}")
    return float(value)


def _version(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{where}.version", f"must be an integer >= 0, got {value!r}")
    return value
