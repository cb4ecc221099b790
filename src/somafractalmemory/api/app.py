"""The app factory: ``create_app(settings=None, backends=None) -> FastAPI``.

Nothing is built at import time, nor when ``create_app`` runs: the backends
are built (``factory.create_backends``) when the app starts (its lifespan),
derived indexes are reconciled, the API keys are loaded, the OpenAPI
document is written to ``SOMA_OPENAPI_PATH`` (unless empty), and the
backends are closed when it stops. Backends passed in are the caller's: the
app uses them and leaves them open.

Where other processes write to the same canonical store (``soma serve
--workers N``, the CLI), the app also applies their writes to this
process's indexes in the background, every ``SOMA_SYNC_INTERVAL_MS``
(``services.follower``), so that a request seldom finds many to apply.

Middlewares, outermost first: startup-failure message (lifespan only) ->
observability (request id, access log, metrics, span) -> body limit (413)
-> FastAPI (routes, the error table).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..core import SomaFractalMemoryEnterprise
from ..errors import SFMError
from ..factory import create_backends
from ..fastcore.blas import use_threads
from ..gcpause import freeze_startup
from ..services.backends import Backends
from ..services.follower import IndexFollower
from ..settings import Settings
from .auth import KeyRing
from .deps import ApiState, NamespaceCores, in_process, in_thread
from .errors import install_error_handlers
from .metrics import ApiMetrics
from .middleware import BodyLimitMiddleware, ObservabilityMiddleware, StartupFailureMiddleware
from .ratelimit import RateLimit
from .routes import ROUTERS
from .tracing import load_tracing

__all__ = ["create_app"]

log = logging.getLogger("somafractalmemory.api")

DESCRIPTION = """\
Store, recall, link and locate JSON memories of AI agents.

Authenticate with `Authorization: Bearer <key>` when the server has API keys;
pick a namespace the key may use with `X-Soma-Namespace`. Errors are JSON
`{error, message, field?}`; see docs/API.md.
"""


def _start(settings: Settings, injected: Backends | None, metrics: ApiMetrics) -> ApiState:
    """Build (or adopt) the backends and everything the routes share (blocking)."""
    keys = KeyRing.from_settings(
        settings.api_keys, settings.api_keys_file, settings.memory_mode.strip().lower(), settings.namespace
    )
    if injected is None:  # a server process: its workers, not BLAS threads, share the cores
        use_threads(settings.blas_threads)
    backends = injected or create_backends(settings.memory_mode, None, settings)
    try:
        root = SomaFractalMemoryEnterprise(keys.default_namespace, backends)
        cores = NamespaceCores(root)
        if injected is None and backends.follower is not None:  # snapshots + changes since, per namespace
            backends.follower.start([root.namespace])
        elif injected is None and backends.options.reconcile_on_start:
            for namespace in sorted(set(backends.kv.namespaces()) | {root.namespace}):
                cores.get(namespace).reconcile()
        limiter = RateLimit(
            backends.rate_limiter, settings.rate_limit_max, settings.rate_limit_window, metrics
        )
    except BaseException:
        if injected is None:
            backends.close()
        raise
    if injected is None:  # a server process: what it built lasts as long as it does
        freeze_startup()
    return ApiState(settings, backends, keys, limiter, metrics, cores, inline=in_process(backends))


#: How much of another process's writes the background follower applies on
#: the event loop per tick (with in-process backends), in steps of
#: ``INLINE_CHANGES`` changes: about 10 ms of work per step with hash embeddings.
INLINE_STEPS = 8
INLINE_CHANGES = 64


async def follow(state: ApiState, follower: IndexFollower) -> None:
    """Apply other processes' writes every ``follower.interval`` (until cancelled).

    Requests still call ``sync()`` before reading; this keeps what they
    find to apply small, and applies writes while no request reads. With
    in-process backends the check for new writes (one indexed read) and a
    small backlog (``INLINE_STEPS`` steps of ``INLINE_CHANGES``, requests
    served between steps) are handled on the loop: a thread would take
    turns at the GIL with the loop, and meanwhile send every request to
    the threadpool too. A larger backlog is applied in a thread.
    """
    failing = False
    while True:
        await asyncio.sleep(max(follower.interval, 0.05))
        try:
            if state.inline:
                for _ in range(INLINE_STEPS):
                    if state.threads or not follower.behind():
                        break
                    follower.sync(force=True, limit=INLINE_CHANGES)
                    await asyncio.sleep(0)
                if state.threads == 0 and not follower.behind():
                    failing = False
                    continue
            # forced: the steps above pushed the next due check an interval away
            await in_thread(state, follower.sync, True)
        except Exception as exc:  # a read retries it; say so once per outage
            if not failing:
                log.warning("applying other processes' writes failed: %s", exc)
            failing = True
        else:
            failing = False


def write_openapi(app: FastAPI, path: str | None) -> None:
    """Write the OpenAPI document atomically (several workers may start at once)."""
    if not path:
        return
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".openapi-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(app.openapi(), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, target)
    except OSError as exc:
        log.warning("could not write the OpenAPI document to %s: %s", target, exc)


def create_app(settings: Settings | None = None, backends: Backends | None = None) -> FastAPI:
    """A new API app; see the module docstring for what happens when."""
    settings = settings or Settings()
    metrics = ApiMetrics()
    reported: list[str] = []  # startup failures already logged

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            state = await run_in_threadpool(_start, settings, backends, metrics)
        except SFMError as exc:
            # one clear line naming the service and the setting, no traceback
            log.error("cannot start: %s", exc)
            reported.append(str(exc))
            raise exc.with_traceback(None) from None
        app.state.soma = state
        write_openapi(app, settings.openapi_path)
        follower = state.backends.follower
        following = asyncio.create_task(follow(state, follower)) if backends is None and follower else None
        log.info("api started", extra={"mode": state.backends.mode, "keys": len(state.keys.grants)})
        try:
            yield
        finally:
            if following is not None:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following
            app.state.soma = None
            await state.ratelimit.aclose()
            if backends is None:
                await run_in_threadpool(state.backends.close)
            log.info("api stopped")

    app = FastAPI(
        title="Soma Fractal Memory",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.soma = None
    install_error_handlers(app)
    # the routes themselves, not the routers: this FastAPI matches an included
    # router's routes through an extra layer that costs ~0.3 ms per request;
    # and ahead of /docs, /redoc and /openapi.json, which are matched
    # (one by one, in order) far less often
    app.router.routes[:0] = [route for router in ROUTERS for route in router.routes]
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, tracing=load_tracing())
    app.add_middleware(StartupFailureMiddleware, reported=reported)
    return app
