"""What routes receive: the app's state, the caller's key, the namespace's core.

``ReadCore`` / ``WriteCore`` are the one way a route gets a core: they
authenticate the key, spend one unit of the caller's rate budget, pick the
namespace (``auth.KeyRing.namespace_for``) and check the key may read or
write it. One core object per namespace is kept (``NamespaceCores``).
(``fastroute.CoreRoute`` calls the same functions, in the same order,
without FastAPI's dependency machinery.)

``run`` calls the core. Where every backend lives in this process (SQLite
file, in-process indexes: ``ApiState.inline``), a call of bounded cost runs
right on the event loop: a thread hop costs more than such a call, and
threads that take turns at the GIL with the event loop make the slowest
responses far slower. Anything else (network backends, bulk work, a moment
when another thread is applying other processes' writes) runs in the
threadpool.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..core import SomaFractalMemoryEnterprise
from ..errors import BackendUnavailable, Unauthorized
from ..models import Memory
from ..services.backends import Backends
from ..settings import Settings
from .auth import Access, KeyGrant, KeyRing
from .combiner import Item, WriteCombiner
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
    "authenticate",
    "bearer",
    "core_for",
    "in_process",
    "in_thread",
    "read_core",
    "render",
    "run",
    "write_core",
]

NAMESPACE_HEADER = "X-Soma-Namespace"
NAMESPACE_MAX_LENGTH = 128
T = TypeVar("T")

#: Adapter names of backends that do no network round trip (``in_process``).
LOCAL_ADAPTERS = frozenset({"memory", "sqlite", "fast", "null"})
#: Core operations of bounded cost (one memory, one query), run on the event
#: loop when ``ApiState.inline``; bulk and scan-like ones always use a thread.
INLINE_OPERATIONS = frozenset(
    {"store", "remember", "recall", "get", "delete", "history", "link", "neighbors"}
)


def in_process(backends: Backends) -> bool:
    """Whether every backend works inside this process (no network I/O to wait for)."""
    adapters: list[Any] = [
        backends.kv,
        backends.graph,
        backends.vectors,
        backends.keywords,
        backends.cache,
        backends.locks,
        backends.rate_limiter,
        backends.bus,
    ]
    if backends.embeddings is not None:
        adapters.append(backends.embeddings)
    return all(getattr(adapter, "name", None) in LOCAL_ADAPTERS for adapter in adapters)


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
    #: run operations of bounded cost on the event loop (see the module docstring)
    inline: bool = False
    #: core calls now running in the threadpool that may hold a lock for long
    #: (``in_thread``; only the event loop's thread changes it)
    threads: int = 0
    #: each core's ``WriteCombiner`` (``store_one``), made on its first store
    combiners: weakref.WeakKeyDictionary[SomaFractalMemoryEnterprise, WriteCombiner] = field(
        default_factory=weakref.WeakKeyDictionary
    )

    @property
    def root(self) -> SomaFractalMemoryEnterprise:
        return self.cores.get(self.keys.default_namespace)


async def api_state(request: Request) -> ApiState:
    state: ApiState | None = getattr(request.app.state, "soma", None)
    if state is None:
        raise BackendUnavailable("Soma API", "the service is starting or stopping")
    return state


State = Annotated[ApiState, Depends(api_state)]
bearer = HTTPBearer(auto_error=False, description="an API key (docs/API.md: Authentication)")


async def _spend(state: ApiState, identity: str) -> None:
    limit = state.ratelimit
    if limit.in_process:
        limit.check(identity)
    elif limit.asynchronous:
        await limit.acheck(identity)
    else:
        await run_in_threadpool(limit.check, identity)


async def authenticate(
    request: Request,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
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


def core_for(
    request: Request, state: ApiState, grant: KeyGrant | None, requested: str | None, access: Access
) -> SomaFractalMemoryEnterprise:
    namespace = state.keys.namespace_for(grant, requested, access)
    request.state.soma_namespace = namespace
    return state.cores.get(namespace)


_NamespaceHeader = Annotated[
    str | None,
    Header(
        alias=NAMESPACE_HEADER,
        max_length=NAMESPACE_MAX_LENGTH,
        description="the namespace to use (the key must be allowed to use it); default: the key's",
    ),
]


async def read_core(
    request: Request, state: State, grant: Authenticated, namespace: _NamespaceHeader = None
) -> SomaFractalMemoryEnterprise:
    return core_for(request, state, grant, namespace, "read")


async def write_core(
    request: Request, state: State, grant: Authenticated, namespace: _NamespaceHeader = None
) -> SomaFractalMemoryEnterprise:
    return core_for(request, state, grant, namespace, "write")


ReadCore = Annotated[SomaFractalMemoryEnterprise, Depends(read_core)]
WriteCore = Annotated[SomaFractalMemoryEnterprise, Depends(write_core)]


async def in_thread(state: ApiState, fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn`` in the threadpool; while it runs, ``run`` keeps the core off the event loop."""
    state.threads += 1
    try:
        return await run_in_threadpool(fn, *args)
    finally:
        state.threads -= 1


async def run(state: ApiState, operation: str, fn: Callable[..., T], *args: Any) -> T:
    """Call the core, timed as ``operation``: on the event loop when that is
    cheap and cannot wait long (see the module docstring), else in the threadpool.

    An operation of bounded cost runs on the loop only while no other core
    work runs in a thread (``ApiState.threads``: bulk operations, health
    checks, the background follower), so it never waits on the loop for a
    lock such work may hold for long; meanwhile it runs in a thread too
    (uncounted: such calls are short). Anything else runs in a thread.
    """
    with state.metrics.operation(operation):
        if operation not in INLINE_OPERATIONS:
            return await in_thread(state, fn, *args)
        if state.inline and not state.threads:
            return fn(*args)
        return await run_in_threadpool(fn, *args)


async def store_one(
    state: ApiState, core: SomaFractalMemoryEnterprise, coordinate: Any, payload: Any, memory_type: Any
) -> Memory:
    """``core.store_memory``, timed as ``store``. Over network backends,
    stores that arrive while others are written go in batches (``combiner``;
    ``SOMA_API_STORE_WRITERS``)."""
    if state.inline or state.settings.api_store_writers < 1:
        return await run(state, "store", core.store_memory, coordinate, payload, memory_type)
    with state.metrics.operation("store"):
        return await _combiner(state, core).store(coordinate, payload, memory_type)


def _combiner(state: ApiState, core: SomaFractalMemoryEnterprise) -> WriteCombiner:
    """``core``'s ``WriteCombiner``, made on its first store."""
    combiner = state.combiners.get(core)
    if combiner is None:

        async def write(items: list[Item]) -> list[Memory]:
            return await in_thread(state, core.store_memories_bulk, items)

        writers, sizes = state.settings.api_store_writers, state.metrics.store_batch_size.observe
        combiner = state.combiners[core] = WriteCombiner(core.namespace, write, writers, on_batch=sizes)
    return combiner


def render(model: BaseModel) -> Response:
    """A response model as JSON, serialised once by pydantic (routes declare the
    model as ``response_model`` for the OpenAPI document; FastAPI does not
    validate a returned ``Response`` a second time)."""
    return Response(model.model_dump_json(), media_type="application/json")
