"""Request and response models of the HTTP API (the OpenAPI document is built from them).

These models give the wire format its shape and its documented bounds
(types, lengths, ranges, examples). The meaning of a value is still checked
once, by the core: coordinates go through ``models.canonical_coordinate``
(here, so that an error names the request's own field), payloads, filters,
context and weights through the services. Nothing here imports FastAPI, so
the Python client (``somafractalmemory.client``) reuses these models.

Coordinates are accepted as ``[1, 2, 3]`` or ``"1,2,3"`` and always returned
as lists of floats.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from ..models import MAX_DIMS, Coordinate, MemoryType, canonical_coordinate
from ..services.recall import MAX_QUERY_CHARS, MAX_TOP_K
from ..services.store import MAX_BULK_ITEMS

__all__ = [
    "MAX_BATCH_QUERIES",
    "BackendHealth",
    "CoordinateIn",
    "DeleteResponse",
    "ErrorResponse",
    "FieldError",
    "HealthResponse",
    "HistoryEntryOut",
    "HistoryResponse",
    "ImportResponse",
    "LinkRequest",
    "LiveResponse",
    "MemoryOut",
    "MemoryTypeName",
    "Neighbor",
    "NeighborsResponse",
    "OkResponse",
    "PathResponse",
    "RangeItem",
    "RangeResponse",
    "ReadyResponse",
    "RecallBatchRequest",
    "RecallBatchResponse",
    "RecallContextRequest",
    "RecallRequest",
    "RecallResponse",
    "RecallScoresRequest",
    "ScoreParts",
    "ScoredMatch",
    "ScoredResponse",
    "StatsResponse",
    "StoreBulkRequest",
    "StoreBulkResponse",
    "StoreItem",
    "StoreRequest",
    "StoreResponse",
    "Weights",
]

#: Most queries in one ``/recall_batch`` call (the core's limit).
MAX_BATCH_QUERIES = 256
_NUMBER = r"\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*"
#: The text form of a coordinate, as documented in the OpenAPI document.
COORDINATE_PATTERN = rf"^{_NUMBER}(,{_NUMBER}){{0,{MAX_DIMS - 1}}}$"


def _coordinate(value: Any) -> Coordinate:
    # InvalidInput is a ValueError: pydantic reports it at the field's own path
    return canonical_coordinate(value)


_COORDINATE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": MAX_DIMS},
        {"type": "string", "pattern": COORDINATE_PATTERN, "maxLength": 1024},
    ],
    "description": f"1 to {MAX_DIMS} finite numbers, as a list or as text '1,2,3'",
    "examples": [[1.0, 2.0, 3.0], "1,2,3"],
}
#: A coordinate in a request: a list of numbers or ``"x,y,z"``, canonicalised.
CoordinateIn = Annotated[
    Coordinate, BeforeValidator(_coordinate), WithJsonSchema(_COORDINATE_SCHEMA, mode="validation")
]
CoordinateOut = Annotated[list[float], Field(examples=[[1.0, 2.0, 3.0]])]
MemoryTypeName = Literal["episodic", "semantic"]
Payload = Annotated[
    dict[str, Any],
    Field(
        description=(
            "a JSON object; reserved keys: importance, text/task/fact/content, timestamp, tags, "
            "ttl_seconds, expires_at"
        ),
        examples=[{"task": "write the API docs", "importance": 5, "tags": ["docs"]}],
    ),
]
Query = Annotated[
    str,
    Field(min_length=1, max_length=MAX_QUERY_CHARS, examples=["api docs"], description="what to recall"),
]
TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K, strict=True, description="how many results at most")]
MinScore = Annotated[
    float | None,
    Field(ge=0.0, le=1.0, strict=True, description="drop results scoring below this (abstention)"),
]
Filters = Annotated[
    dict[str, Any] | None,
    Field(
        description="payload conditions applied before the top-k cut: {key: value}, {key: [a, b]}, "
        "{key: {gte: 1, lt: 5}}; dotted keys reach nested objects",
        examples=[{"tags": "docs", "importance": {"gte": 2}}],
    ),
]
Context = Annotated[
    dict[str, Any] | None,
    Field(
        description="extra signals: coordinate/coordinates (graph anchors), filters, memory_type, "
        "weights, as_of (timestamp), other string values add to the query",
        examples=[{"coordinate": [1, 2, 3]}],
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


# -- requests ------------------------------------------------------------------
class StoreRequest(_Model):
    coord: CoordinateIn
    payload: Payload
    type: MemoryTypeName = "episodic"


class RememberRequest(_Model):
    payload: Payload
    coord: CoordinateIn | None = None
    type: MemoryTypeName = "episodic"


class StoreItem(_Model):
    coord: CoordinateIn
    payload: Payload
    type: MemoryTypeName = "episodic"


class StoreBulkRequest(_Model):
    items: list[StoreItem] = Field(max_length=MAX_BULK_ITEMS)


class Weights(_Model):
    """Weights of the score parts; unset ones keep their defaults."""

    model_config = ConfigDict(extra="forbid")

    vector: float | None = Field(None, ge=0, strict=True)
    keyword: float | None = Field(None, ge=0, strict=True)
    importance: float | None = Field(None, ge=0, strict=True)
    recency: float | None = Field(None, ge=0, le=1, strict=True)
    graph: float | None = Field(None, ge=0, le=1, strict=True)

    def given(self) -> dict[str, float] | None:
        return self.model_dump(exclude_none=True) or None


class RecallRequest(_Model):
    query: Query
    top_k: TopK = 5
    type: MemoryTypeName | None = None
    filters: Filters = None
    context: Context = None
    min_score: MinScore = None


class RecallScoresRequest(RecallRequest):
    weights: Weights | None = None


class RecallContextRequest(_Model):
    query: Query
    context: Annotated[dict[str, Any], Field(examples=[{"coordinate": [1, 2, 3]}])]
    top_k: TopK = 5
    type: MemoryTypeName | None = None
    filters: Filters = None
    min_score: MinScore = None


class RecallBatchRequest(_Model):
    queries: list[Query] = Field(min_length=1, max_length=MAX_BATCH_QUERIES)
    top_k: TopK = 5
    type: MemoryTypeName | None = None
    filters: Filters = None
    min_score: MinScore = None


class LinkRequest(_Model):
    from_coord: CoordinateIn
    to_coord: CoordinateIn
    type: str = Field("related", min_length=1, max_length=64, description="the link's type")
    weight: float = Field(1.0, gt=0, strict=True, description="edge cost for shortest paths")
    metadata: dict[str, Any] | None = None


# -- responses -----------------------------------------------------------------
class StoreResponse(_Model):
    ok: bool = True
    coord: CoordinateOut
    memory_id: str


class StoreBulkResponse(_Model):
    stored: int


class RecallResponse(_Model):
    matches: list[dict[str, Any]] = Field(
        description="payloads, best first, with `coordinate` and `memory_type` added"
    )


class RecallBatchResponse(_Model):
    batches: list[list[dict[str, Any]]]


class ScoreParts(_Model):
    vector: float
    keyword: float
    importance: float
    recency: float
    graph: float


class ScoredMatch(_Model):
    coord: CoordinateOut
    payload: dict[str, Any]
    score: float
    parts: ScoreParts


class ScoredResponse(_Model):
    results: list[ScoredMatch]


class RangeItem(_Model):
    coord: CoordinateOut
    payload: dict[str, Any] = Field(description="the payload, with `coordinate` and `memory_type` added")
    memory_id: str
    type: MemoryType
    version: int
    created_at: float
    updated_at: float


class RangeResponse(_Model):
    memories: list[RangeItem]


class OkResponse(_Model):
    ok: bool = True


class Neighbor(_Model):
    coord: CoordinateOut = Field(description="the memory at the other end of the edge")
    type: str
    weight: float
    from_coord: CoordinateOut = Field(description="where the edge starts")
    to_coord: CoordinateOut = Field(description="where the edge ends")
    metadata: dict[str, Any]
    created_at: float


class NeighborsResponse(_Model):
    neighbors: list[Neighbor]


class PathResponse(_Model):
    path: list[CoordinateOut]
    found: bool


class StatsResponse(_Model):
    model_config = ConfigDict(extra="allow")

    namespace: str
    total_memories: int
    episodic: int
    semantic: int
    links: int
    vectors: int
    keyword_documents: int
    pending_events: int
    mode: str


class MemoryOut(_Model):
    memory_id: str
    namespace: str
    coord: CoordinateOut
    payload: dict[str, Any]
    type: MemoryType
    created_at: float
    updated_at: float
    version: int


class DeleteResponse(_Model):
    ok: bool = True
    coord: CoordinateOut
    memory_id: str


class HistoryEntryOut(_Model):
    version: int
    action: str = Field(description="created, updated or deleted")
    payload: dict[str, Any] | None
    type: MemoryType | None
    changed_at: float
    actor: str
    changed_keys: list[str]


class HistoryResponse(_Model):
    coord: CoordinateOut
    memory_id: str
    versions: list[HistoryEntryOut]


class ImportResponse(_Model):
    memories: int
    history: int
    links: int


class BackendHealth(_Model):
    model_config = ConfigDict(extra="allow")

    backend: str
    ok: bool
    latency_ms: float
    error: str | None = None


class HealthResponse(_Model):
    status: Literal["ok", "degraded"]
    mode: str
    backends: dict[str, BackendHealth]


class LiveResponse(_Model):
    status: Literal["ok"] = "ok"


class ReadyResponse(_Model):
    ready: bool
    backends: dict[str, bool]


class FieldError(_Model):
    field: str
    message: str


class ErrorResponse(_Model):
    """Every error: a stable code, a message, the field at fault if any."""

    error: str = Field(examples=["invalid_input"])
    message: str
    field: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None
    service: str | None = None
    detail: str | None = None
    setting: str | None = None
