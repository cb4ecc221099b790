"""Writes and single-memory management: store, remember, bulk, get, delete, history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from ...errors import NotFound
from ...models import canonical_coordinate, memory_id
from ..deps import ReadCore, State, WriteCore, render, run, store_one
from ..errors import ERROR_RESPONSES
from ..fastroute import CoreRoute
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

router = APIRouter(tags=["memories"], responses=ERROR_RESPONSES, route_class=CoreRoute)
CoordPath = Annotated[
    str,
    Path(description="the coordinate as text, e.g. 1,2,3", examples=["1,2,3"], max_length=1024),
]


@router.post("/store", response_model=StoreResponse, summary="Store (insert or update) one memory")
async def store(body: StoreRequest, core: WriteCore, state: State) -> Response:
    memory = await store_one(state, core, body.coord, body.payload, body.type)
    state.metrics.memories_stored.inc()
    return render(StoreResponse(coord=list(memory.coordinate), memory_id=memory.id))


@router.post(
    "/remember", response_model=StoreResponse, summary="Store a memory; the service picks the coordinate"
)
async def remember(body: RememberRequest, core: WriteCore, state: State) -> Response:
    memory = await run(state, "remember", core.remember, body.payload, body.coord, body.type)
    state.metrics.memories_stored.inc()
    return render(StoreResponse(coord=list(memory.coordinate), memory_id=memory.id))


@router.post("/store_bulk", response_model=StoreBulkResponse, summary="Store many memories in one batch")
async def store_bulk(body: StoreBulkRequest, core: WriteCore, state: State) -> Response:
    items = [(i.coord, i.payload, i.type) for i in body.items]
    stored = await run(state, "store_bulk", core.store_memories_bulk, items)
    state.metrics.memories_stored.inc(len(stored))
    return render(StoreBulkResponse(stored=len(stored)))


@router.get("/memories/{coord}", response_model=MemoryOut, summary="The memory at a coordinate")
async def get_memory(coord: CoordPath, core: ReadCore, state: State) -> Response:
    memory = await run(state, "get", core.get_memory, canonical_coordinate(coord, "coord"))
    if memory is None:
        raise NotFound(f"no memory at {coord} in namespace {core.namespace!r}")
    return render(
        MemoryOut(
            memory_id=memory.id,
            namespace=memory.namespace,
            coord=list(memory.coordinate),
            payload=memory.payload,
            type=memory.memory_type,
            created_at=memory.created_at,
            updated_at=memory.updated_at,
            version=memory.version,
        )
    )


@router.delete(
    "/memories/{coord}",
    response_model=DeleteResponse,
    summary="Delete a memory everywhere (canonical, vectors, keywords, graph, cache)",
)
async def delete_memory(coord: CoordPath, core: WriteCore, state: State) -> Response:
    c = canonical_coordinate(coord, "coord")
    if not await run(state, "delete", core.delete, c):
        raise NotFound(f"no memory at {coord} in namespace {core.namespace!r}")
    return render(DeleteResponse(coord=list(c), memory_id=memory_id(core.namespace, c)))


@router.get(
    "/memories/{coord}/history",
    response_model=HistoryResponse,
    summary="Every recorded version of a memory (also after its deletion)",
)
async def history(coord: CoordPath, core: ReadCore, state: State) -> Response:
    c = canonical_coordinate(coord, "coord")
    versions = await run(state, "history", core.get_versions, c)
    if not versions:
        raise NotFound(f"no memory has ever been at {coord} in namespace {core.namespace!r}")
    return render(
        HistoryResponse(
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
    )
