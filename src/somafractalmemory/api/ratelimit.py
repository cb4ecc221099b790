"""Request budgets: ``SOMA_RATE_LIMIT_MAX`` requests per ``SOMA_RATE_LIMIT_WINDOW`` seconds.

Counted per API key (``key:<name>``), or per client address (``addr:<ip>``)
for requests without a valid key; a request with a wrong key is counted
against its address, so guessing keys is throttled too. The window slides
(``IRateLimiter``): the in-process limiter for one process, the Redis one,
shared by every API process, when Redis is configured. Over budget: 429 with
``Retry-After``. ``SOMA_RATE_LIMIT_MAX=0`` turns the limit off. If the
limiter's backend does not answer, the request is let through (and counted
in ``soma_rate_limit_backend_errors``): an outage of Redis must not take the
API down.
"""

from __future__ import annotations

import logging
from typing import Protocol, cast

from ..errors import BackendUnavailable, ConfigurationError, RateLimited
from ..interfaces.storage import IRateLimiter
from .metrics import ApiMetrics

__all__ = ["IAsyncRateLimiter", "RateLimit"]

log = logging.getLogger("somafractalmemory.api")


class IAsyncRateLimiter(IRateLimiter, Protocol):
    """A limiter that can also count a request without leaving the event loop."""

    asynchronous: bool

    async def hit_async(self, key: str, limit: int, window_seconds: float) -> float: ...


class RateLimit:
    """``check(identity)`` counts one request or raises ``RateLimited``."""

    def __init__(
        self, limiter: IRateLimiter, max_requests: int, window_seconds: float, metrics: ApiMetrics
    ) -> None:
        if max_requests > 0 and not window_seconds > 0:
            raise ConfigurationError("SOMA_RATE_LIMIT_WINDOW must be > 0 seconds")
        self.limiter = limiter
        self.max_requests = max_requests
        self.window_seconds = window_seconds
        self.metrics = metrics

    @property
    def enabled(self) -> bool:
        return self.max_requests > 0

    @property
    def in_process(self) -> bool:
        """Whether a check is a quick in-memory call (else it is network I/O)."""
        return self.limiter.name == "memory"

    @property
    def asynchronous(self) -> bool:
        """Whether ``acheck`` runs on the event loop (the limiter has ``hit_async``)."""
        return bool(getattr(self.limiter, "asynchronous", False))

    def check(self, identity: str) -> None:
        if not self.enabled:
            return
        try:
            wait = self.limiter.hit(identity, self.max_requests, self.window_seconds)
        except BackendUnavailable as exc:
            self._not_checked(exc)
            return
        self._settle(wait)

    async def acheck(self, identity: str) -> None:
        """``check`` on the event loop, for limiters that are ``asynchronous``."""
        if not self.enabled:
            return
        limiter = cast(IAsyncRateLimiter, self.limiter)
        try:
            wait = await limiter.hit_async(identity, self.max_requests, self.window_seconds)
        except BackendUnavailable as exc:
            self._not_checked(exc)
            return
        self._settle(wait)

    async def aclose(self) -> None:
        """Close what ``acheck`` opened on this loop."""
        close = getattr(self.limiter, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception as exc:  # shutting down: say so, go on closing the rest
                log.warning("closing the rate limiter's connections failed: %s", exc)

    def _not_checked(self, exc: BackendUnavailable) -> None:
        self.metrics.rate_limit_errors.inc()
        log.warning("rate limit not checked: %s", exc)

    def _settle(self, wait: float) -> None:
        if wait > 0:
            self.metrics.rate_limited.inc()
            raise RateLimited(wait)
