"""``SomaClient``: the HTTP API from Python, with the library's own types and errors.

::

    from somafractalmemory.client import SomaClient

    with SomaClient("http://127.0.0.1:9595", api_key="k-agent-a") as soma:
        soma.store((1, 2, 3), {"task": "write docs", "importance": 5})
        soma.recall("docs")  # -> [{"task": "write docs", ..., "coordinate": [1.0, 2.0, 3.0]}]

One method per endpoint. Results are the API's response models
(``somafractalmemory.api.schemas``) or plain lists and dicts where the API
returns payloads. Errors are the library's exceptions, mapped back from the
status code: 422 ``InvalidInput`` (with ``field``), 413 ``PayloadTooLarge``,
404 ``NotFound``, 409 ``Conflict``, 401 ``Unauthorized``, 403 ``Forbidden``,
429 ``RateLimited`` (``retry_after`` from the header), 503
``BackendUnavailable``; a server that cannot be reached is
``BackendUnavailable("Soma API", ..., "base_url")``. Coordinates are checked
here with the library's own rule before anything is sent.

Needs ``httpx`` (the ``[client]`` extra). Pass ``transport=`` to use any
``httpx`` transport (tests, proxies, retries).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
from pydantic import BaseModel

from . import __version__
from .api.schemas import (
    HealthResponse,
    HistoryEntryOut,
    HistoryResponse,
    ImportResponse,
    LiveResponse,
    MemoryOut,
    Neighbor,
    NeighborsResponse,
    PathResponse,
    RangeItem,
    RangeResponse,
    ReadyResponse,
    RecallBatchResponse,
    RecallResponse,
    ScoredMatch,
    ScoredResponse,
    StatsResponse,
    StoreBulkResponse,
    StoreResponse,
)
from .errors import (
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SFMError,
    Unauthorized,
)
from .models import canonical_coordinate, format_coordinate

__all__ = ["SomaClient", "raise_for_response"]

M = TypeVar("M", bound=BaseModel)
NAMESPACE_HEADER = "X-Soma-Namespace"
_CHUNK = 64 * 1024


def _coord(value: Any, field: str) -> list[float]:
    return list(canonical_coordinate(value, field))


def _coord_text(value: Any, field: str) -> str:
    return format_coordinate(canonical_coordinate(value, field))


def _plain(value: Any) -> Any:
    """A mapping as a dict (for JSON); anything else as given, for the server to judge."""
    return dict(value) if isinstance(value, Mapping) else value


def _type(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def raise_for_response(response: httpx.Response) -> None:
    """Raise the library exception an error response stands for (nothing for 2xx/3xx)."""
    status = response.status_code
    if status < 400:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or response.text or response.reason_phrase or f"HTTP {status}")
    if status in (400, 413, 422):
        errors = body.get("errors") or []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        field = str(first.get("field") or body.get("field") or "body")
        detail = str(first.get("message") or message)
        raise (PayloadTooLarge if status == 413 else InvalidInput)(field, detail)
    if status == 404:
        raise NotFound(message)
    if status == 409:
        raise Conflict(message)
    if status == 401:
        raise Unauthorized(message)
    if status == 403:
        raise Forbidden(message)
    if status == 429:
        try:
            retry_after = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            retry_after = 1.0
        raise RateLimited(retry_after)
    if status == 503:
        if body.get("error") == "configuration_error":
            raise ConfigurationError(message)
        if body.get("service"):
            raise BackendUnavailable(str(body["service"]), str(body.get("detail") or ""), body.get("setting"))
        raise BackendUnavailable("Soma API", message)
    raise SFMError(f"HTTP {status}: {message}")


class SomaClient:
    """A client of one Soma Fractal Memory server (and one namespace, if given)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:9595",
        api_key: str | None = None,
        namespace: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        all_headers = {"User-Agent": f"somafractalmemory-client/{__version__}", **(headers or {})}
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        if namespace:
            all_headers[NAMESPACE_HEADER] = namespace
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url, headers=all_headers, timeout=timeout, transport=transport
        )

    # -- plumbing -------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SomaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise BackendUnavailable("Soma API", f"{self.base_url}: {exc}", "base_url") from None
        raise_for_response(response)
        return response

    def _json(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self._send(method, path, **kwargs).json())

    @staticmethod
    def _params(**values: Any) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}

    # -- writes ---------------------------------------------------------------
    def store(self, coord: Any, payload: Mapping[str, Any], memory_type: Any = "episodic") -> StoreResponse:
        """Insert or update the memory at ``coord``."""
        body = {"coord": _coord(coord, "coord"), "payload": _plain(payload), "type": _type(memory_type)}
        return self._json(StoreResponse, "POST", "/store", json=body)

    def remember(
        self, payload: Mapping[str, Any], coord: Any = None, memory_type: Any = "episodic"
    ) -> StoreResponse:
        """Store; the server picks a free coordinate when none is given."""
        body: dict[str, Any] = {"payload": _plain(payload), "type": _type(memory_type)}
        if coord is not None:
            body["coord"] = _coord(coord, "coord")
        return self._json(StoreResponse, "POST", "/remember", json=body)

    def store_bulk(self, items: Iterable[Any]) -> int:
        """Store many: items are ``(coord, payload[, type])`` or ``{"coord", "payload", "type"}``."""
        wire = []
        for i, item in enumerate(items):
            if isinstance(item, Mapping):
                coord = item.get("coord", item.get("coordinate"))
                payload, mtype = item.get("payload"), item.get("type", item.get("memory_type"))
            else:
                coord, payload, *rest = item
                mtype = rest[0] if rest else None
            entry = {"coord": _coord(coord, f"items[{i}].coord"), "payload": _plain(payload)}
            if mtype is not None:
                entry["type"] = _type(mtype)
            wire.append(entry)
        return self._json(StoreBulkResponse, "POST", "/store_bulk", json={"items": wire}).stored

    def delete(self, coord: Any) -> bool:
        """Delete the memory at ``coord`` everywhere; ``False`` if there was none."""
        try:
            self._send("DELETE", f"/memories/{_coord_text(coord, 'coord')}")
        except NotFound:
            return False
        return True

    def link(
        self,
        from_coord: Any,
        to_coord: Any,
        link_type: str = "related",
        weight: float = 1.0,
        metadata: Mapping[str, Any] | None = None,
    ) -> bool:
        body: dict[str, Any] = {
            "from_coord": _coord(from_coord, "from_coord"),
            "to_coord": _coord(to_coord, "to_coord"),
            "type": link_type,
            "weight": weight,
        }
        if metadata is not None:
            body["metadata"] = _plain(metadata)
        return self._send("POST", "/link", json=body).json()["ok"] is True

    # -- reads ----------------------------------------------------------------
    def get(self, coord: Any) -> MemoryOut:
        """The memory at ``coord``; ``NotFound`` if there is none."""
        return self._json(MemoryOut, "GET", f"/memories/{_coord_text(coord, 'coord')}")

    def retrieve(self, coord: Any) -> dict[str, Any] | None:
        """The payload at ``coord`` (as the library's ``retrieve``), or ``None``."""
        try:
            memory = self.get(coord)
        except NotFound:
            return None
        return {**memory.payload, "coordinate": memory.coord, "memory_type": memory.type.value}

    def history(self, coord: Any) -> list[HistoryEntryOut]:
        return self._json(HistoryResponse, "GET", f"/memories/{_coord_text(coord, 'coord')}/history").versions

    def recall(
        self,
        query: str,
        top_k: int = 5,
        memory_type: Any = None,
        filters: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        min_score: float | None = None,
    ) -> list[dict[str, Any]]:
        body = self._params(
            query=query,
            top_k=top_k,
            type=_type(memory_type),
            filters=_plain(filters),
            context=_plain(context),
            min_score=min_score,
        )
        return self._json(RecallResponse, "POST", "/recall", json=body).matches

    def recall_with_scores(
        self,
        query: str,
        top_k: int = 5,
        memory_type: Any = None,
        filters: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        min_score: float | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> list[ScoredMatch]:
        body = self._params(
            query=query,
            top_k=top_k,
            type=_type(memory_type),
            filters=_plain(filters),
            context=_plain(context),
            min_score=min_score,
            weights=_plain(weights),
        )
        return self._json(ScoredResponse, "POST", "/recall_with_scores", json=body).results

    def recall_with_context(
        self,
        query: str,
        context: Mapping[str, Any],
        top_k: int = 5,
        memory_type: Any = None,
        filters: Mapping[str, Any] | None = None,
        min_score: float | None = None,
    ) -> list[ScoredMatch]:
        body = self._params(
            query=query,
            context=_plain(context),
            top_k=top_k,
            type=_type(memory_type),
            filters=_plain(filters),
            min_score=min_score,
        )
        return self._json(ScoredResponse, "POST", "/recall_with_context", json=body).results

    def recall_batch(
        self,
        queries: Sequence[str],
        top_k: int = 5,
        memory_type: Any = None,
        filters: Mapping[str, Any] | None = None,
        min_score: float | None = None,
    ) -> list[list[dict[str, Any]]]:
        body = self._params(
            queries=list(queries),
            top_k=top_k,
            type=_type(memory_type),
            filters=_plain(filters),
            min_score=min_score,
        )
        return self._json(RecallBatchResponse, "POST", "/recall_batch", json=body).batches

    def range(
        self, min_coord: Any, max_coord: Any, memory_type: Any = None, limit: int | None = None
    ) -> list[RangeItem]:
        """Memories inside the inclusive box ``[min_coord, max_coord]``."""
        params = self._params(
            min=_coord_text(min_coord, "min"),
            max=_coord_text(max_coord, "max"),
            type=_type(memory_type),
            limit=limit,
        )
        return self._json(RangeResponse, "GET", "/range", params=params).memories

    def neighbors(
        self, coord: Any, link_type: str | None = None, limit: int | None = None, direction: str = "out"
    ) -> list[Neighbor]:
        params = self._params(
            coord=_coord_text(coord, "coord"), link_type=link_type, limit=limit, direction=direction
        )
        return self._json(NeighborsResponse, "GET", "/neighbors", params=params).neighbors

    def shortest_path(
        self, frm: Any, to: Any, link_type: str | None = None, max_depth: int | None = None
    ) -> list[list[float]]:
        """The coordinates along the cheapest path, ``[]`` if there is none."""
        params = self._params(
            frm=_coord_text(frm, "frm"), to=_coord_text(to, "to"), link_type=link_type, max_depth=max_depth
        )
        return self._json(PathResponse, "GET", "/shortest_path", params=params).path

    # -- admin ----------------------------------------------------------------
    def stats(self) -> StatsResponse:
        return self._json(StatsResponse, "GET", "/stats")

    def health(self) -> HealthResponse:
        return self._json(HealthResponse, "GET", "/health")

    def healthz(self) -> LiveResponse:
        return self._json(LiveResponse, "GET", "/healthz")

    def readyz(self) -> ReadyResponse:
        """Readiness; a 503 "not ready" answer is returned, not raised."""
        try:
            response = self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise BackendUnavailable("Soma API", f"{self.base_url}: {exc}", "base_url") from None
        if response.status_code == 503 and "ready" in response.text:
            return ReadyResponse.model_validate(response.json())
        raise_for_response(response)
        return ReadyResponse.model_validate(response.json())

    def metrics(self) -> str:
        """The Prometheus exposition text."""
        return self._send("GET", "/metrics").text

    def export_lines(self) -> Iterator[str]:
        """The namespace's JSONL export, line by line, as the server streams it."""
        try:
            with self._http.stream("GET", "/export") as response:
                if response.status_code >= 400:
                    response.read()
                    raise_for_response(response)
                for line in response.iter_lines():
                    if line:
                        yield line + "\n"
        except httpx.TransportError as exc:
            raise BackendUnavailable("Soma API", f"{self.base_url}: {exc}", "base_url") from None

    def export(self, target: str | Path | IO[str]) -> int:
        """Write the export to a path or a text stream; return the number of lines."""
        if isinstance(target, (str, Path)):
            with open(target, "w", encoding="utf-8") as fh:
                return self.export(fh)
        count = 0
        for line in self.export_lines():
            target.write(line)
            count += 1
        return count

    def import_memories(
        self, source: str | Path | bytes | IO[str] | IO[bytes] | Iterable[str]
    ) -> ImportResponse:
        """Upload a JSONL export (a path, bytes, a stream or lines), streamed in chunks."""
        if isinstance(source, (str, Path)):
            with open(source, "rb") as fh:
                return self.import_memories(fh)
        content = source if isinstance(source, bytes) else _chunks(source)
        headers = {"Content-Type": "application/x-ndjson"}
        return self._json(ImportResponse, "POST", "/import", content=content, headers=headers)


def _chunks(source: IO[str] | IO[bytes] | Iterable[str]) -> Iterator[bytes]:
    if isinstance(source, io.IOBase) or hasattr(source, "read"):
        reader: Any = source
        while True:
            block = reader.read(_CHUNK)
            if not block:
                return
            yield block.encode() if isinstance(block, str) else bytes(block)
    for line in source:
        yield line.encode() if isinstance(line, str) else bytes(line)
