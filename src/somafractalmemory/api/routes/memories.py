"""Writes and single-memory management: store, remember, bulk, get, delete, history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from starlette.concurrency import run_in_threadpool

from ..deps import render

from ...errors import NotFound
from ...models import canonical_coordinate, memory_id
from ..deps import ReadCore, State, WriteCore
from ..errors import ERROR_RESPONSES
from ..schemas import (
    DeleteResponse,
    HistoryEntryOut,
    HistoryResponse,
    MemoryOut,
    RememberRequest,
    StoreBulkRequest,
    StoreBulkResponse,
    StoreRequest,
    StoreResponse,
)

__all__ = ["router"]

router = APIRouter(tags=["memories"], responses=ERROR_RESPONSES)
CoordPath = Annotated[
    str,
    Path(description="the coordinate as text, e.g. 1,2,3", examples=["1,2,3"], max_length=1024),
]


@router.post("/store", response_model=StoreResponse, summary="Store (insert or update) one memory")
async def store(body: StoreRequest, core: WriteCore, state: State) -> Response:
    with state.metrics.operation("store"):
        memory = await run_in_threadpool(core.store_memory, body.coord, body.payload, body.type)
    state.metrics.memories_stored.inc()
    return render(StoreResponse(coord=list(memory.coordinate), memory_id=memory.id))


@router.post(
    "/remember", response_model=StoreResponse, summary="Store a memory; the service picks the coordinate"
)
def remember(body: RememberRequest, core: WriteCore, state: State) -> StoreResponse:
    with state.metrics.operation("remember"):
        memory = core.remember(body.payload, body.coord, body.type)
    state.metrics.memories_stored.inc()
    return StoreResponse(coord=list(memory.coordinate), memory_id=memory.id)


@router.post("/store_bulk", response_model=StoreBulkResponse, summary="Store many memories in one batch")
def store_bulk(body: StoreBulkRequest, core: WriteCore, state: State) -> StoreBulkResponse:
    with state.metrics.operation("store_bulk"):
        stored = core.store_memories_bulk((i.coord, i.payload, i.type) for i in body.items)
    state.metrics.memories_stored.inc(len(stored))
    return StoreBulkResponse(stored=len(stored))


@router.get("/memories/{coord}", response_model=MemoryOut, summary="The memory at a coordinate")
def get_memory(coord: CoordPath, core: ReadCore) -> MemoryOut:
    memory = core.get_memory(canonical_coordinate(coord, "coord"))
    if memory is None:
        raise NotFound(f"no memory at {coord} in namespace {core.namespace!r}")
    return MemoryOut(
        memory_id=memory.id,
        namespace=memory.namespace,
        coord=list(memory.coordinate),
        payload=memory.payload,
        type=memory.memory_type,
        created_at=memory.created_at,
        updated_at=memory.updated_at,
        version=memory.version,
    )


@router.delete(
    "/memories/{coord}",
    response_model=DeleteResponse,
    summary="Delete a memory everywhere (canonical, vectors, keywords, graph, cache)",
)
def delete_memory(coord: CoordPath, core: WriteCore, state: State) -> DeleteResponse:
    c = canonical_coordinate(coord, "coord")
    with state.metrics.operation("delete"):
        deleted = core.delete(c)
    if not deleted:
        raise NotFound(f"no memory at {coord} in namespace {core.namespace!r}")
    return DeleteResponse(coord=list(c), memory_id=memory_id(core.namespace, c))


@router.get(
    "/memories/{coord}/history",
    response_model=HistoryResponse,
    summary="Every recorded version of a memory (also after its deletion)",
)
def history(coord: CoordPath, core: ReadCore) -> HistoryResponse:
    c = canonical_coordinate(coord, "coord")
    versions = core.get_versions(c)
    if not versions:
        raise NotFound(f"no memory has ever been at {coord} in namespace {core.namespace!r}")
    return HistoryResponse(
        coord=list(c),
        memory_id=memory_id(core.namespace, c),
        versions=[
            HistoryEntryOut(
                version=v.version,
                action=v.action,
                payload=v.payload,
                type=v.memory_type,
                changed_at=v.changed_at,
                actor=v.actor,
                changed_keys=v.changed_keys,
            )
            for v in versions
        ],
    )
