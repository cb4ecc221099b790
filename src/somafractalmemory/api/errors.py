"""Errors to HTTP responses: one table from exception *type* to status code.

Every error response has the same JSON shape (``ErrorResponse``)::

    {"error": "invalid_input", "message": "coord: must have 1 to 16 values",
     "field": "coord", "errors": [{"field": "coord", "message": "must have 1 to 16 values"}],
     "request_id": "4f1c..."}

``error`` is a stable code, ``message`` the full human-readable text;
``field`` and ``errors`` come with 413 and 422; a 503 for an unavailable
backend adds ``service``, ``detail`` and ``setting`` (what to check).

Lookup walks the exception's MRO, so a subclass maps like its nearest listed
base (``LockTimeout`` is a ``Conflict``: 409; ``MissingDependency`` is a
``ConfigurationError``: 503). Anything not in the table is a bug: it is
logged with its traceback and answered with 500.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
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
from .logging import current_request_id
from .schemas import ErrorResponse

__all__ = [
    "ERROR_RESPONSES",
    "STATUS_BY_ERROR",
    "error_body",
    "error_response",
    "install_error_handlers",
    "status_for",
]

log = logging.getLogger("somafractalmemory.api")

#: THE table: exception type -> (HTTP status, error code in the body).
STATUS_BY_ERROR: dict[type[SFMError], tuple[int, str]] = {
    PayloadTooLarge: (413, "payload_too_large"),
    InvalidInput: (422, "invalid_input"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    Unauthorized: (401, "unauthorized"),
    Forbidden: (403, "forbidden"),
    RateLimited: (429, "rate_limited"),
    BackendUnavailable: (503, "backend_unavailable"),
    ConfigurationError: (503, "configuration_error"),
}

_DESCRIPTIONS = {
    401: "missing or unknown API key",
    403: "the key may not use this namespace",
    404: "no memory at that coordinate",
    409: "conflicting change (e.g. a held lock)",
    413: "request body or payload over the size limit",
    422: "invalid input; `field` names it",
    429: "rate limit exceeded; see the Retry-After header",
    503: "a backend is unavailable",
}
#: The ``responses=`` entry every route declares, for the OpenAPI document.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in _DESCRIPTIONS.items()
}
ERROR_RESPONSES[429]["headers"] = {
    "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
}


def status_for(exc: BaseException) -> tuple[int, str] | None:
    """The table row for ``exc`` (nearest base class wins), or ``None``."""
    for cls in type(exc).__mro__:
        row = STATUS_BY_ERROR.get(cls)  # type: ignore[call-overload]
        if row is not None:
            return row
    return None


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    return body


def error_response(exc: SFMError) -> JSONResponse:
    """The response for a library error (must be in the table)."""
    row = status_for(exc)
    if row is None:  # pragma: no cover - every SFMError subclass is covered by the table
        raise exc
    status, code = row
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    field = None
    if isinstance(exc, InvalidInput):
        field = exc.field
        extra["errors"] = [{"field": exc.field, "message": exc.message}]
    elif isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, BackendUnavailable):
        extra.update(service=exc.service, detail=exc.detail, setting=exc.setting)
    if status >= 500:
        log.warning("%s: %s", code, exc)
    return JSONResponse(error_body(code, str(exc), field, **extra), status_code=status, headers=headers)


def _field_path(loc: Sequence[int | str]) -> str:
    """``("body", "items", 3, "coord")`` -> ``"items[3].coord"``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors():
        field = _field_path(err.get("loc", ()))
        cause = (err.get("ctx") or {}).get("error")
        # for a core validator's error, its own words (without pydantic's "Value error, ")
        message = cause.message if isinstance(cause, InvalidInput) else str(err.get("msg", "invalid"))
        errors.append({"field": field, "message": message})
    return errors


def install_error_handlers(app: FastAPI) -> None:
    """Register the table (and FastAPI's own errors) on ``app``."""

    async def on_library_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SFMError)
        return error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _validation_errors(exc) or [{"field": "body", "message": "invalid request"}]
        first = errors[0]
        body = error_body(
            "invalid_input", f"{first['field']}: {first['message']}", first["field"], errors=errors
        )
        return JSONResponse(body, status_code=422)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:  # FastAPI could not parse the body (e.g. not UTF-8)
            message = "not valid JSON: the body could not be parsed"
            errors = [{"field": "body", "message": message}]
            return JSONResponse(
                error_body("invalid_input", f"body: {message}", "body", errors=errors), status_code=422
            )
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)

    app.add_exception_handler(SFMError, on_library_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
