"""What routes receive: the app's state, the caller's key, the namespace's core.

``ReadCore`` / ``WriteCore`` are the one way a route gets a core: they
authenticate the key, spend one unit of the caller's rate budget, pick the
namespace (``auth.KeyRing.namespace_for``) and check the key may read or
write it. One core object per namespace is kept (``NamespaceCores``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..core import SomaFractalMemoryEnterprise
from ..errors import BackendUnavailable, Unauthorized
from ..services.backends import Backends
from ..settings import Settings
from .auth import Access, KeyGrant, KeyRing
from .metrics import ApiMetrics
from .ratelimit import RateLimit

__all__ = [
    "ApiState",
    "Authenticated",
    "NamespaceCores",
    "ReadCore",
    "State",
    "WriteCore",
    "api_state",
    "render",
    "run",
]

NAMESPACE_HEADER = "X-Soma-Namespace"
T = TypeVar("T")


class NamespaceCores:
    """One ``SomaFractalMemoryEnterprise`` per namespace, over shared backends.

    The most recently used ``capacity`` cores are kept (a core holds the
    per-namespace write lock, so it must be reused, not rebuilt per request).
    """

    def __init__(self, root: SomaFractalMemoryEnterprise, capacity: int = 4096) -> None:
        self._root = root
        self._capacity = capacity
        self._cores: OrderedDict[str, SomaFractalMemoryEnterprise] = OrderedDict({root.namespace: root})
        self._lock = threading.Lock()

    def get(self, namespace: str) -> SomaFractalMemoryEnterprise:
        with self._lock:
            core = self._cores.get(namespace)
            if core is None:
                core = self._root.for_namespace(namespace)
                self._cores[namespace] = core
                while len(self._cores) > self._capacity:
                    self._cores.popitem(last=False)
            else:
                self._cores.move_to_end(namespace)
            return core


@dataclass
class ApiState:
    """Everything the routes share, built at startup by the app's lifespan."""

    settings: Settings
    backends: Backends
    keys: KeyRing
    ratelimit: RateLimit
    metrics: ApiMetrics
    cores: NamespaceCores

    @property
    def root(self) -> SomaFractalMemoryEnterprise:
        return self.cores.get(self.keys.default_namespace)


async def api_state(request: Request) -> ApiState:
    state: ApiState | None = getattr(request.app.state, "soma", None)
    if state is None:
        raise BackendUnavailable("Soma API", "the service is starting or stopping")
    return state


State = Annotated[ApiState, Depends(api_state)]
_bearer = HTTPBearer(auto_error=False, description="an API key (docs/API.md: Authentication)")


async def _spend(state: ApiState, identity: str) -> None:
    if state.ratelimit.in_process:
        state.ratelimit.check(identity)
    else:
        await run_in_threadpool(state.ratelimit.check, identity)


async def authenticate(
    request: Request,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> KeyGrant | None:
    """The caller's key grant (``None`` when no keys are configured), rate-limited."""
    address = f"addr:{request.client.host if request.client else 'unknown'}"
    try:
        grant = state.keys.authenticate(credentials.credentials if credentials else None)
    except Unauthorized:
        await _spend(state, address)  # wrong keys spend the address's budget
        raise
    request.state.soma_key = grant.name if grant else None
    await _spend(state, f"key:{grant.name}" if grant else address)
    return grant


Authenticated = Annotated[KeyGrant | None, Depends(authenticate)]


def _core_for(
    request: Request, state: ApiState, grant: KeyGrant | None, requested: str | None, access: Access
) -> SomaFractalMemoryEnterprise:
    namespace = state.keys.namespace_for(grant, requested, access)
    request.state.soma_namespace = namespace
    return state.cores.get(namespace)


_NamespaceHeader = Annotated[
    str | None,
    Header(
        alias=NAMESPACE_HEADER,
        max_length=128,
        description="the namespace to use (the key must be allowed to use it); default: the key's",
    ),
]


async def read_core(
    request: Request, state: State, grant: Authenticated, namespace: _NamespaceHeader = None
) -> SomaFractalMemoryEnterprise:
    return _core_for(request, state, grant, namespace, "read")


async def write_core(
    request: Request, state: State, grant: Authenticated, namespace: _NamespaceHeader = None
) -> SomaFractalMemoryEnterprise:
    return _core_for(request, state, grant, namespace, "write")


ReadCore = Annotated[SomaFractalMemoryEnterprise, Depends(read_core)]
WriteCore = Annotated[SomaFractalMemoryEnterprise, Depends(write_core)]


async def run(state: ApiState, operation: str, fn: Callable[..., T], *args: Any) -> T:
    """Call the core off the event loop (it blocks on I/O), timed as ``operation``."""
    with state.metrics.operation(operation):
        return await run_in_threadpool(fn, *args)


def render(model: BaseModel) -> Response:
    """A response model as JSON, serialised once by pydantic (routes declare the
    model as ``response_model`` for the OpenAPI document; FastAPI does not
    validate a returned ``Response`` a second time)."""
    return Response(model.model_dump_json(), media_type="application/json")
