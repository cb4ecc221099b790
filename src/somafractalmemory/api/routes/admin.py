"""Operations: stats, health and readiness probes, metrics, export and import."""

from __future__ import annotations

import tempfile
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ..deps import Authenticated, ReadCore, State, WriteCore, api_state, in_thread, render, run
from ..errors import ERROR_RESPONSES
from ..fastroute import CoreRoute
from ..metrics import CONTENT_TYPE
from ..schemas import HealthResponse, ImportResponse, LiveResponse, ReadyResponse, StatsResponse

__all__ = ["probes", "router"]

router = APIRouter(tags=["admin"], responses=ERROR_RESPONSES, route_class=CoreRoute)
probes = APIRouter(tags=["probes"])
NDJSON = "application/x-ndjson"
_SPOOL_BYTES = 8 * 1024 * 1024


@router.get("/stats", response_model=StatsResponse, summary="Counts for the namespace")
async def stats(core: ReadCore, state: State) -> Response:
    return render(StatsResponse(**await run(state, "stats", core.memory_stats)))


@router.get(
    "/health", response_model=HealthResponse, summary="Every backend's status and latency (200 even if down)"
)
async def health(state: State, grant: Authenticated) -> Response:
    report = await run(state, "health", state.root.health_check)
    status = "ok" if all(entry.get("ok") for entry in report.values()) else "degraded"
    return render(
        HealthResponse.model_validate({"status": status, "mode": state.backends.mode, "backends": report})
    )


@probes.get("/healthz", response_model=LiveResponse, summary="Liveness: the process answers")
async def healthz() -> Response:
    return render(LiveResponse())


@probes.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="Readiness: 200 once every backend answers, else 503",
    responses={503: {"model": ReadyResponse, "description": "not ready"}},
)
async def readyz(request: Request) -> JSONResponse:
    state = getattr(request.app.state, "soma", None)
    backends: dict[str, bool] = {}
    if state is not None:
        report = await in_thread(state, state.root.health_check)
        backends = {port: bool(entry.get("ok")) for port, entry in report.items()}
    ready = bool(backends) and all(backends.values())
    body = ReadyResponse(ready=ready, backends=backends)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@probes.get(
    "/metrics",
    summary="Prometheus metrics of this API process",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "metrics"}},
)
async def metrics(request: Request) -> Response:
    state = await api_state(request)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


@router.get(
    "/export",
    summary="The namespace as JSONL (memories, history, links), streamed",
    response_class=StreamingResponse,
    responses={200: {"content": {NDJSON: {"schema": {"type": "string"}}}, "description": "JSONL export"}},
)
async def export(core: ReadCore) -> StreamingResponse:
    filename = f"{core.namespace}.jsonl".replace('"', "")
    return StreamingResponse(
        core.export_lines(),  # a sync iterator: Starlette pulls it in the threadpool
        media_type=NDJSON,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a JSONL export (as produced by GET /export), streamed",
        "content": {NDJSON: {"schema": {"type": "string"}}},
    }
}


@router.post(
    "/import",
    response_model=ImportResponse,
    summary="Load a JSONL export into the namespace (request body, never a server path)",
    openapi_extra=_IMPORT_BODY,
)
async def import_(request: Request, core: WriteCore, state: State) -> Response:
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
        async for chunk in request.stream():
            spool.write(chunk)
        spool.seek(0)
        counts = await run(state, "import", core.import_memories, spool)
    state.metrics.memories_stored.inc(counts["memories"])
    return render(ImportResponse(**counts))
