"""Links between memories: add one, list neighbours, find the shortest path."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from ...models import canonical_coordinate, memory_id
from ..deps import ReadCore, State, WriteCore, render, run
from ..errors import ERROR_RESPONSES
from ..fastroute import CoreRoute
from ..schemas import LinkRequest, Neighbor, NeighborsResponse, OkResponse, PathResponse

__all__ = ["router"]

router = APIRouter(tags=["graph"], responses=ERROR_RESPONSES, route_class=CoreRoute)
LinkType = Annotated[str | None, Query(min_length=1, max_length=64, description="only links of this type")]


@router.post("/link", response_model=OkResponse, summary="Add a directed, typed, weighted link")
async def link(body: LinkRequest, core: WriteCore, state: State) -> Response:
    await run(
        state,
        "link",
        core.link_memories,
        body.from_coord,
        body.to_coord,
        body.type,
        body.weight,
        body.metadata,
    )
    return render(OkResponse())


@router.get("/neighbors", response_model=NeighborsResponse, summary="The memories linked to one memory")
async def neighbors(
    core: ReadCore,
    state: State,
    coord: Annotated[str, Query(description="the memory, e.g. 1,2,3", examples=["1,2,3"], max_length=1024)],
    link_type: LinkType = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000, description="at most this many")] = None,
    direction: Annotated[Literal["out", "in", "both"], Query(description="which edges")] = "out",
) -> Response:
    c = canonical_coordinate(coord, "coord")
    me = memory_id(core.namespace, c)
    links = await run(state, "neighbors", core.get_neighbors, c, link_type, limit, direction)
    return render(
        NeighborsResponse(
            neighbors=[
                Neighbor(
                    coord=list(ln.from_coord if ln.to_id == me and ln.from_id != me else ln.to_coord),
                    type=ln.link_type,
                    weight=ln.weight,
                    from_coord=list(ln.from_coord),
                    to_coord=list(ln.to_coord),
                    metadata=ln.metadata,
                    created_at=ln.created_at,
                )
                for ln in links
            ]
        )
    )


@router.get(
    "/shortest_path", response_model=PathResponse, summary="Cheapest path along links (weights are costs)"
)
async def shortest_path(
    core: ReadCore,
    state: State,
    frm: Annotated[str, Query(description="start, e.g. 1,2,3", examples=["1,2,3"], max_length=1024)],
    to: Annotated[str, Query(description="goal, e.g. 4,5,6", examples=["4,5,6"], max_length=1024)],
    link_type: LinkType = None,
    max_depth: Annotated[int, Query(ge=1, le=64, description="at most this many links")] = 8,
) -> Response:
    path = await run(state, "shortest_path", core.find_shortest_path, frm, to, link_type, max_depth)
    return render(PathResponse(path=[list(c) for c in path], found=bool(path)))
