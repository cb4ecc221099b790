"""Pure ASGI middlewares: request context (id, log line, metrics, span) and the body limit."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import PayloadTooLarge
from .errors import error_body
from .logging import new_request_id, request_id_var
from .metrics import ApiMetrics
from .tracing import Tracing

__all__ = ["BodyLimitMiddleware", "ObservabilityMiddleware", "StartupFailureMiddleware"]

log = logging.getLogger("somafractalmemory.api.access")
UNMATCHED = "<unmatched>"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _route_template(scope: Scope) -> str:
    """The matched route's path template; matches it now if routing never ran (e.g. a 413)."""
    route = scope.get("route")
    if route is None:
        app = scope.get("app")
        for candidate in getattr(app, "routes", ()):
            match, _ = candidate.matches(scope)
            if match is not Match.NONE:
                route = candidate
                break
    path = getattr(route, "path", None)
    return str(path) if path else UNMATCHED


class ObservabilityMiddleware:
    """Request id in and out, one JSON access-log line, metrics and a span per request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, tracing: Tracing) -> None:
        self.app = app
        self.metrics = metrics
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id(_header(scope, b"x-request-id"))
        token = request_id_var.set(request_id)
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 500
        started = time.perf_counter()
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], header]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            if self.tracing.recording():  # (a span context costs even when it records nothing)
                with self.tracing.span(scope) as span:
                    try:
                        await self.app(scope, receive, send_with_id)
                    finally:
                        self.tracing.finish(span, scope["method"], _route_template(scope), status)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            route = _route_template(scope)
            elapsed = time.perf_counter() - started
            self.metrics.in_flight.dec()
            self.metrics.observe_request(scope["method"], route, status, elapsed)
            client = scope.get("client")
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope.get("path", ""),
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "client": client[0] if client else None,
                        "namespace": state.get("soma_namespace"),
                        "key": state.get("soma_key"),
                    },
                )
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """413 for a body over ``max_bytes``: by ``Content-Length`` up front, else by counting.

    A streamed body (no length, or a lying one) is counted chunk by chunk as
    the app reads it; past the limit reading raises ``PayloadTooLarge`` and
    whatever the app answers is replaced by the 413 (if it has not started).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge("body", f"request body exceeds the limit of {self.max_bytes} bytes")

    async def _reply_413(self, send: Send) -> None:
        exc = self._too_large()
        errors = [{"field": exc.field, "message": exc.message}]
        body = json.dumps(error_body("payload_too_large", str(exc), exc.field, errors=errors)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
            await self._reply_413(send)
            return
        received = 0
        exceeded = False
        started = False
        replaced = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise self._too_large()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if exceeded and not started:
                if not replaced:
                    replaced = True
                    await self._reply_413(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
            if not replaced:
                await self._reply_413(send)


class StartupFailureMiddleware:
    """Keeps a known startup failure to the one line the app logged.

    Starlette reports a failed startup to the server with the traceback as
    the message (and uvicorn logs it). When the lifespan has already logged
    the cause (a library error naming the service and the setting), its text
    is put in ``reported``; the failure is then sent without the traceback.
    """

    def __init__(self, app: ASGIApp, reported: list[str]) -> None:
        self.app = app
        self.reported = reported

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def quiet_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.reported:
                message = {**message, "message": ""}
            await send(message)

        await self.app(scope, receive, quiet_send)
