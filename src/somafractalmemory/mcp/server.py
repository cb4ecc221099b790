"""The MCP server: one namespace of a memory system, as tools an AI agent can call.

``build_server(memory)`` returns an ``mcp.server.mcpserver.MCPServer`` with nine
tools: ``store``, ``remember``, ``recall``, ``link``, ``neighbors``, ``path``,
``range``, ``delete`` and ``stats``. Each tool is a thin shell: it parses its
coordinates (so an error names the tool's own parameter), makes one call on
``SomaFractalMemoryEnterprise`` and renders the result as a JSON object whose
shape is published as the tool's output schema.

The server acts on the namespace of the memory system it was given and on no
other: no tool takes a namespace.

Errors: an ``SFMError`` raised by the core becomes an MCP tool error (a
result with ``isError`` set) carrying the exception's message, which for
``InvalidInput`` starts with the field at fault (``coordinate: values must be
finite, got 'nan'``). Arguments that do not fit the input schema are reported
the same way by the SDK. Anything else is logged on stderr and reported as a
generic tool error; the server keeps serving.

``soma mcp`` runs it over stdio or streamable HTTP; see docs/MCP.md.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

from pydantic import Field, WithJsonSchema
from typing_extensions import TypedDict

from ..core import SomaFractalMemoryEnterprise
from ..errors import MissingDependency, SFMError
from ..models import MAX_DIMS, Coordinate, Link, Memory, RecallHit, canonical_coordinate
from ..services.graph import MAX_LINK_TYPE
from ..services.recall import MAX_QUERY_CHARS, MAX_TOP_K

try:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ToolAnnotations
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    raise MissingDependency("mcp", "mcp") from None

__all__ = ["SERVER_NAME", "TOOL_NAMES", "build_server"]

#: The name the server reports to clients.
SERVER_NAME = "soma-fractal-memory"
#: Every tool, in the order ``tools/list`` returns them.
TOOL_NAMES = ("store", "remember", "recall", "link", "neighbors", "path", "range", "delete", "stats")

P = ParamSpec("P")
R = TypeVar("R")

# -- parameter types (they make the published input schemas) -------------------------------------

_COORDINATE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": MAX_DIMS},
        {"type": "string", "minLength": 1},
    ],
    "description": f"1 to {MAX_DIMS} finite numbers, as a list [1, 2, 3] or as text '1,2,3'",
    "examples": [[1.0, 2.0, 3.0], "1,2,3"],
}
# Typed loosely (a list or a string) and published precisely: the core checks the values, so a
# bad one is reported by ``canonical_coordinate`` under the parameter's own name.
CoordinateArg = Annotated[list[Any] | str, WithJsonSchema(_COORDINATE_SCHEMA)]
OptionalCoordinateArg = Annotated[
    list[Any] | str | None,
    WithJsonSchema(
        {
            "anyOf": [*_COORDINATE_SCHEMA["anyOf"], {"type": "null"}],
            "description": "where to store it; omit to let the service pick a free coordinate",
            "default": None,
        }
    ),
]
MemoryTypeName = Literal["episodic", "semantic"]
MemoryTypeArg = Annotated[
    MemoryTypeName,
    Field(description="'episodic': something that happened (gets a timestamp); 'semantic': a fact"),
]
PayloadArg = Annotated[
    dict[str, Any],
    Field(
        description=(
            "the memory, a JSON object. Text is read from 'text', 'task', 'fact' or 'content' (then any "
            "other string value); reserved keys: importance (number >= 0, default 1), tags (list of "
            "strings), timestamp, ttl_seconds, expires_at (seconds)"
        ),
        examples=[{"text": "the user prefers tea", "importance": 3, "tags": ["preference"]}],
    ),
]
LinkTypeArg = Annotated[
    str, Field(min_length=1, max_length=MAX_LINK_TYPE, description="the link's type, e.g. 'causes'")
]
OptionalLinkTypeArg = Annotated[
    str | None,
    Field(min_length=1, max_length=MAX_LINK_TYPE, description="only links of this type (default: any)"),
]
WeightArg = Annotated[float, Field(gt=0, description="the link's cost when finding paths (> 0)")]
QueryArg = Annotated[
    str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="what to recall, in words")
]
TopKArg = Annotated[int, Field(ge=1, le=MAX_TOP_K, description="how many hits at most")]
MemoryTypeFilter = Annotated[
    MemoryTypeName | None, Field(description="only 'episodic' or only 'semantic' memories (default: both)")
]
FiltersArg = Annotated[
    dict[str, Any] | None,
    Field(
        description=(
            "payload conditions, applied before the top-k cut: {key: value} (a list field matches if "
            "it contains value), {key: [a, b]} (any of), {key: {gte: 1, lt: 5}} (also gt, lte, in, "
            "ne); dotted keys reach nested objects"
        ),
        examples=[{"tags": "preference", "importance": {"gte": 2}}],
    ),
]
MinScoreArg = Annotated[
    float | None,
    Field(ge=0.0, le=1.0, description="drop hits scoring below this, to get nothing rather than noise"),
]
LimitArg = Annotated[int | None, Field(ge=1, description="at most this many links (default: all)")]
DirectionArg = Annotated[
    Literal["out", "in", "both"],
    Field(description="'out': links from the memory, 'in': links to it, 'both': either"),
]
MaxDepthArg = Annotated[int, Field(ge=1, le=64, description="at most this many links along the path")]


# -- result shapes (they make the published output schemas) ---------------------------------------


class MemoryRecord(TypedDict):
    """One stored memory."""

    id: str
    namespace: str
    coordinate: list[float]
    payload: dict[str, Any]
    memory_type: MemoryTypeName
    created_at: float
    updated_at: float
    version: int


class ScoreParts(TypedDict):
    """The parts of a recall score, each in [0, 1]."""

    vector: float
    keyword: float
    importance: float
    recency: float
    graph: float


class Hit(TypedDict):
    """One recall hit: the payload (with coordinate and memory_type added), its score and parts."""

    coord: list[float]
    payload: dict[str, Any]
    score: float
    parts: ScoreParts


class RecallResult(TypedDict):
    """Recall hits, best first."""

    hits: list[Hit]


class LinkRecord(TypedDict):
    """A directed, typed, weighted link between two memories."""

    from_coord: list[float]
    to_coord: list[float]
    link_type: str
    weight: float
    metadata: dict[str, Any]
    created_at: float


class NeighborsResult(TypedDict):
    """The links of a memory."""

    links: list[LinkRecord]


class PathResult(TypedDict):
    """The cheapest path along links (weights are costs); empty when there is none."""

    path: list[list[float]]
    found: bool
    hops: int


class RangeResult(TypedDict):
    """The memories inside the box."""

    memories: list[MemoryRecord]


class DeleteResult(TypedDict):
    """Whether a memory was deleted at the coordinate."""

    coordinate: list[float]
    deleted: bool


class StatsResult(TypedDict):
    """Counts for the namespace."""

    namespace: str
    total_memories: int
    episodic: int
    semantic: int
    links: int
    vectors: int
    keyword_documents: int
    pending_events: int
    mode: str


# -- rendering ------------------------------------------------------------------------------------


def _memory(m: Memory) -> MemoryRecord:
    return MemoryRecord(
        id=m.id,
        namespace=m.namespace,
        coordinate=list(m.coordinate),
        payload=m.payload,
        memory_type=m.memory_type.value,
        created_at=m.created_at,
        updated_at=m.updated_at,
        version=m.version,
    )


def _hit(h: RecallHit) -> Hit:
    p = h.parts
    return Hit(
        coord=list(h.memory.coordinate),
        payload=h.memory.public_payload(),
        score=h.score,
        parts=ScoreParts(
            vector=p.vector, keyword=p.keyword, importance=p.importance, recency=p.recency, graph=p.graph
        ),
    )


def _link(link: Link) -> LinkRecord:
    return LinkRecord(
        from_coord=list(link.from_coord),
        to_coord=list(link.to_coord),
        link_type=link.link_type,
        weight=link.weight,
        metadata=link.metadata,
        created_at=link.created_at,
    )


def _coord(value: Any, field_name: str) -> Coordinate:
    return canonical_coordinate(value, field_name)


def _sfm_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn an ``SFMError`` into a ``ToolError`` with the same message (an MCP tool error)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SFMError as exc:
            raise ToolError(str(exc)) from exc

    return wrapper


# -- the tools ------------------------------------------------------------------------------------


class MemoryTools:
    """The tools, bound to one memory system. Method docstrings are the tool descriptions."""

    def __init__(self, memory: SomaFractalMemoryEnterprise) -> None:
        self.memory = memory

    def store(
        self,
        coordinate: CoordinateArg,
        payload: PayloadArg,
        memory_type: MemoryTypeArg = "episodic",
    ) -> MemoryRecord:
        """Store a memory (a JSON object) at a coordinate; storing again at the same coordinate
        updates it (its history keeps every version). 'episodic' is something that happened
        (it gets a timestamp), 'semantic' a fact. Returns the stored memory."""
        coord = _coord(coordinate, "coordinate")
        return _memory(self.memory.store_memory(coord, payload, memory_type))

    def remember(
        self,
        payload: PayloadArg,
        coordinate: OptionalCoordinateArg = None,
        memory_type: MemoryTypeArg = "episodic",
    ) -> MemoryRecord:
        """Store a memory without choosing a place: the service picks a free coordinate derived
        from the payload, unless one is given. Returns the stored memory with its coordinate."""
        coord = _coord(coordinate, "coordinate") if coordinate is not None else None
        return _memory(self.memory.remember(payload, coord, memory_type))

    def recall(
        self,
        query: QueryArg,
        top_k: TopKArg = 5,
        memory_type: MemoryTypeFilter = None,
        filters: FiltersArg = None,
        min_score: MinScoreArg = None,
    ) -> RecallResult:
        """Recall memories by meaning and keyword, combined with importance and recency, best
        first. Each hit has the memory's coordinate, its payload (with coordinate and
        memory_type added), its score in [0, 1] and the score's parts."""
        hits = self.memory.recall_with_scores(query, top_k, memory_type, filters, min_score=min_score)
        return RecallResult(hits=[_hit(h) for h in hits])

    def link(
        self,
        from_coord: CoordinateArg,
        to_coord: CoordinateArg,
        link_type: LinkTypeArg = "related",
        weight: WeightArg = 1.0,
    ) -> LinkRecord:
        """Add a directed link from one memory to another (both must exist). Linking the same
        pair with the same type again replaces the link."""
        frm, to = _coord(from_coord, "from_coord"), _coord(to_coord, "to_coord")
        return _link(self.memory.link_memories(frm, to, link_type, weight))

    def neighbors(
        self,
        coord: CoordinateArg,
        link_type: OptionalLinkTypeArg = None,
        limit: LimitArg = None,
        direction: DirectionArg = "out",
    ) -> NeighborsResult:
        """List the links of the memory at a coordinate, with their type and weight."""
        c = _coord(coord, "coord")
        return NeighborsResult(
            links=[_link(x) for x in self.memory.get_neighbors(c, link_type, limit, direction)]
        )

    def path(
        self,
        from_coord: CoordinateArg,
        to_coord: CoordinateArg,
        link_type: OptionalLinkTypeArg = None,
        max_depth: MaxDepthArg = 8,
    ) -> PathResult:
        """Find the cheapest path from one memory to another along outgoing links (a link's
        weight is its cost). 'found' is false and 'path' empty when there is none."""
        frm, to = _coord(from_coord, "from_coord"), _coord(to_coord, "to_coord")
        found = self.memory.find_shortest_path(frm, to, link_type, max_depth)
        return PathResult(path=[list(c) for c in found], found=bool(found), hops=max(len(found) - 1, 0))

    def range(
        self,
        min: CoordinateArg,
        max: CoordinateArg,
        memory_type: MemoryTypeFilter = None,
    ) -> RangeResult:
        """List the memories whose coordinates lie inside the inclusive box from min to max
        (as many values as min, each >= the matching value of min)."""
        lo, hi = _coord(min, "min"), _coord(max, "max")
        return RangeResult(
            memories=[_memory(m) for m in self.memory.find_by_coordinate_range(lo, hi, memory_type)]
        )

    def delete(self, coordinate: CoordinateArg) -> DeleteResult:
        """Delete the memory at a coordinate everywhere (store, vectors, keyword index, links).
        'deleted' is false when there was no memory there."""
        coord = _coord(coordinate, "coordinate")
        return DeleteResult(coordinate=list(coord), deleted=self.memory.delete(coord))

    def stats(self) -> StatsResult:
        """Counts for this namespace: memories (total, episodic, semantic), links, vectors,
        keyword documents, pending events, and the mode the service runs in."""
        s = self.memory.memory_stats()
        return StatsResult(
            namespace=str(s["namespace"]),
            total_memories=int(s["total_memories"]),
            episodic=int(s["episodic"]),
            semantic=int(s["semantic"]),
            links=int(s["links"]),
            vectors=int(s["vectors"]),
            keyword_documents=int(s["keyword_documents"]),
            pending_events=int(s["pending_events"]),
            mode=str(s["mode"]),
        )


_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_ANNOTATIONS: dict[str, ToolAnnotations] = {
    "store": ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False),
    "remember": ToolAnnotations(destructive_hint=False, idempotent_hint=False, open_world_hint=False),
    "recall": _READ_ONLY,
    "link": ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False),
    "neighbors": _READ_ONLY,
    "path": _READ_ONLY,
    "range": _READ_ONLY,
    "delete": ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False),
    "stats": _READ_ONLY,
}


def build_server(memory: SomaFractalMemoryEnterprise) -> MCPServer:
    """An MCP server whose tools act on ``memory``'s namespace (and only on it)."""
    from .. import __version__

    server = MCPServer(
        SERVER_NAME,
        title="Soma Fractal Memory",
        version=__version__,
        instructions=(
            f"Long-term memory of namespace {memory.namespace!r}. Memories are JSON objects stored at "
            "coordinates (lists of numbers, or text '1,2,3'). Use 'remember' or 'store' to keep "
            "something, 'recall' to find memories by meaning, 'link' to relate two memories, "
            "'neighbors' and 'path' to follow links, 'range' to list a region, 'delete' to forget, "
            "'stats' for counts."
        ),
    )
    tools = MemoryTools(memory)
    for name in TOOL_NAMES:
        method = getattr(tools, name)
        server.add_tool(
            _sfm_errors(method),
            name=name,
            description=inspect.getdoc(method),
            annotations=_ANNOTATIONS[name],
        )
    return server
