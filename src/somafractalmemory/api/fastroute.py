"""``CoreRoute``: the usual request of a JSON-body route without FastAPI's generic machinery.

FastAPI handles every request the general way: it parses the content type
with ``email.message``, walks the dependency tree (for ``/recall``: seven
resolutions, each re-deriving facts about its callable), collects errors,
wraps each step in telemetry. For the routes of this API that costs more
CPU than the HTTP server and the route's own work together.

A route built with this class (``APIRouter(route_class=CoreRoute)``) whose
endpoint takes exactly one JSON body model and only this API's own
dependencies (``ReadCore``, ``WriteCore``, ``State``, ``Authenticated``)
and returns a ``Response`` serves a well-formed request directly:

1. ``Content-Type: application/json``, a non-empty body that ``json.loads``
   parses and the body model validates (the same validation FastAPI runs:
   ``model_validate`` in Python mode), and an ``X-Soma-Namespace`` header
   within its length. These steps have no side effect;
2. then ``deps.api_state``, the bearer credentials, ``deps.authenticate``
   (rate limit) and ``deps.core_for``: the functions FastAPI would call, in
   the order it calls them, raising the same errors;
3. then the endpoint, whose ``Response`` is returned as FastAPI would.

Anything else - a body or header that fails step 1, dependency overrides,
FastAPI's own telemetry being on for the request - goes to the
standard FastAPI handler, which produces exactly the response it always
did (422 with the field named, 401, 403, 429, 503, ...). The OpenAPI
document is FastAPI's, built from the same route. A route that does not fit
the shape above is left to FastAPI entirely.
"""

from __future__ import annotations

import inspect
import json
import logging
import typing
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from .auth import Access
from .deps import (
    NAMESPACE_HEADER,
    NAMESPACE_MAX_LENGTH,
    api_state,
    authenticate,
    bearer,
    core_for,
    read_core,
    write_core,
)

__all__ = ["CoreRoute"]

log = logging.getLogger("somafractalmemory.api")

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
_NAMESPACE_KEY = NAMESPACE_HEADER.lower()
#: dependency callable -> what the fast path passes for it
_KNOWN: dict[Any, str] = {read_core: "read", write_core: "write", api_state: "state", authenticate: "grant"}


class _Plan:
    """How to call one endpoint: its body model and what each parameter gets."""

    def __init__(self, endpoint: Callable[..., Any], body_name: str, model: type[BaseModel]) -> None:
        self.endpoint = endpoint
        self.body_name = body_name
        self.model = model
        self.params: list[tuple[str, str]] = []  # (parameter name, "read" | "write" | "state" | "grant")
        self.access: Access = "read"

    @property
    def auth(self) -> bool:
        """Whether FastAPI would call ``authenticate`` (everything but ``State`` needs it)."""
        return any(kind != "state" for _, kind in self.params)


def _plan(route: APIRoute) -> _Plan | None:
    """The fast path's plan for ``route``, or None when it does not fit (see module docstring)."""
    try:
        dependant = route.dependant
        body_field = route.body_field
        if (
            body_field is None
            or len(dependant.body_params) != 1
            or dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or getattr(route, "_embed_body_fields", True)
            or not inspect.iscoroutinefunction(route.endpoint)
        ):
            return None
        hints = typing.get_type_hints(route.endpoint)
        model = hints.get(body_field.name)
        returns = hints.get("return")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        if not (isinstance(returns, type) and issubclass(returns, Response)):
            return None
        plan = _Plan(route.endpoint, body_field.name, model)
        kinds = set()
        for sub in dependant.dependencies:
            kind = _KNOWN.get(sub.call)
            if kind is None or not sub.name:
                return None
            kinds.add(kind)
            plan.params.append((sub.name, kind))
        if len(kinds & {"read", "write"}) > 1:
            return None
        plan.access = "write" if "write" in kinds else "read"
        names = {body_field.name, *(name for name, _ in plan.params)}
        if names != set(inspect.signature(route.endpoint).parameters):
            return None
        return plan
    except Exception:  # another FastAPI version's internals: use its own handler
        log.debug("route %s: no fast path", getattr(route, "path", "?"), exc_info=True)
        return None


def _is_json(content_type: str | None) -> bool:
    return content_type is not None and content_type.partition(";")[0].strip().lower() == "application/json"


class CoreRoute(APIRoute):
    """An ``APIRoute`` that serves a well-formed request of a JSON-body route directly."""

    #: False sends every request to FastAPI's handler (tests compare the two)
    enabled: ClassVar[bool] = True

    def get_route_handler(self) -> Handler:
        standard = super().get_route_handler()
        plan = _plan(self)
        if plan is None:
            return standard
        overrides = self.dependency_overrides_provider

        async def handler(request: Request) -> Response:
            if (
                not CoreRoute.enabled
                or (overrides is not None and getattr(overrides, "dependency_overrides", None))
                or request.scope.get("fastapi.telemetry") is not None
                or not _is_json(request.headers.get("content-type"))
            ):
                return await standard(request)
            raw = await request.body()
            namespace = request.headers.get(_NAMESPACE_KEY)
            if not raw or (namespace is not None and len(namespace) > NAMESPACE_MAX_LENGTH):
                return await standard(request)
            try:
                body = plan.model.model_validate(json.loads(raw))
            except Exception:  # FastAPI reports it (the body is kept on the request)
                return await standard(request)
            values: dict[str, Any] = {plan.body_name: body}
            if plan.params:  # FastAPI's order: the state, then the key (and rate limit), then the core
                state = await api_state(request)
                grant = await authenticate(request, state, await bearer(request)) if plan.auth else None
                for name, kind in plan.params:
                    if kind == "state":
                        values[name] = state
                    elif kind == "grant":
                        values[name] = grant
                    else:
                        values[name] = core_for(request, state, grant, namespace, plan.access)
            response = await plan.endpoint(**values)
            if not isinstance(response, Response):  # pragma: no cover - the plan checked the annotation
                raise TypeError(f"{request.url.path}: the endpoint returned {type(response).__name__}")
            return response

        return handler
