"""Reads by meaning, keyword and place: recall (plain, scored, batch, with context) and range."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from ...models import RecallHit
from ..deps import ReadCore, State, render, run
from ..errors import ERROR_RESPONSES
from ..fastroute import CoreRoute
from ..schemas import (
    MemoryTypeName,
    RangeItem,
    RangeResponse,
    RecallBatchRequest,
    RecallBatchResponse,
    RecallContextRequest,
    RecallResponse,
    RecallScoresRequest,
    ScoredMatch,
    ScoredResponse,
    ScoreParts,
)
from ..schemas import RecallRequest as RecallBody

__all__ = ["router"]

router = APIRouter(tags=["recall"], responses=ERROR_RESPONSES, route_class=CoreRoute)


def _scored(hits: list[RecallHit]) -> Response:
    return render(
        ScoredResponse(
            results=[
                ScoredMatch(
                    coord=list(h.memory.coordinate),
                    payload=h.memory.public_payload(),
                    score=h.score,
                    parts=ScoreParts(**h.parts.to_dict()),
                )
                for h in hits
            ]
        )
    )


@router.post("/recall", response_model=RecallResponse, summary="Hybrid recall: payloads, best first")
async def recall(body: RecallBody, core: ReadCore, state: State) -> Response:
    matches = await run(
        state,
        "recall",
        core.recall,
        body.query,
        body.top_k,
        body.type,
        body.filters,
        body.context,
        body.min_score,
    )
    return render(RecallResponse(matches=matches))


@router.post(
    "/recall_with_scores",
    response_model=ScoredResponse,
    summary="Hybrid recall with each result's score and its parts",
)
async def recall_with_scores(body: RecallScoresRequest, core: ReadCore, state: State) -> Response:
    weights = body.weights.given() if body.weights else None
    hits = await run(
        state,
        "recall",
        core.recall_with_scores,
        body.query,
        body.top_k,
        body.type,
        body.filters,
        body.context,
        body.min_score,
        weights,
    )
    return _scored(hits)


@router.post(
    "/recall_with_context",
    response_model=ScoredResponse,
    summary="Recall where a context object adds filters and signals (graph anchors, as_of, ...)",
)
async def recall_with_context(body: RecallContextRequest, core: ReadCore, state: State) -> Response:
    hits = await run(
        state,
        "recall",
        core.recall_with_context,
        body.query,
        body.context,
        body.top_k,
        body.type,
        body.filters,
        body.min_score,
    )
    return _scored(hits)


@router.post(
    "/recall_batch", response_model=RecallBatchResponse, summary="Many recalls in one call (batched)"
)
async def recall_batch(body: RecallBatchRequest, core: ReadCore, state: State) -> Response:
    batches = await run(
        state,
        "recall_batch",
        core.recall_batch,
        body.queries,
        body.top_k,
        body.type,
        body.filters,
        body.min_score,
    )
    return render(RecallBatchResponse(batches=batches))


@router.get("/range", response_model=RangeResponse, summary="Memories inside an inclusive coordinate box")
async def find_range(
    core: ReadCore,
    state: State,
    min: Annotated[str, Query(description="lower corner, e.g. 0,0,0", examples=["0,0,0"], max_length=1024)],
    max: Annotated[str, Query(description="upper corner, e.g. 5,5,5", examples=["5,5,5"], max_length=1024)],
    type: Annotated[MemoryTypeName | None, Query(description="only this memory type")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000, description="at most this many")] = 1000,
) -> Response:
    memories = await run(state, "range", core.find_by_coordinate_range, min, max, type)
    return render(
        RangeResponse(
            memories=[
                RangeItem(
                    coord=list(m.coordinate),
                    payload=m.public_payload(),
                    memory_id=m.id,
                    type=m.memory_type,
                    version=m.version,
                    created_at=m.created_at,
                    updated_at=m.updated_at,
                )
                for m in memories[:limit]
            ]
        )
    )
