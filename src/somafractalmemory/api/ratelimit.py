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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from ..errors import BackendUnavailable, ConfigurationError, RateLimited
from ..interfaces.storage import IRateLimiter
from .metrics import ApiMetrics

__all__ = ["IAsyncRateLimiter", "IGrantingRateLimiter", "Leases", "RateLimit"]

log = logging.getLogger("somafractalmemory.api")


class IAsyncRateLimiter(IRateLimiter, Protocol):
    """A limiter that can also count a request without leaving the event loop."""

    asynchronous: bool

    async def hit_async(self, key: str, limit: int, window_seconds: float) -> float: ...


class IGrantingRateLimiter(IAsyncRateLimiter, Protocol):
    """A limiter that can count several requests of a key in one call."""

    async def take_async(self, key: str, n: int, limit: int, window_seconds: float) -> tuple[int, float]:
        """Count up to ``n``: ``(counted, 0.0)``, or ``(0, seconds to wait)``."""
        ...


#: The most requests one grant counts.
MAX_GRANT = 256
#: Keys with grants kept at most (the expired ones are dropped first).
MAX_LEASED_KEYS = 10_000


@dataclass
class _Lease:
    left: int  # counted and not used yet
    size: int  # asked for
    used: int  # used so far
    until: float  # after this (monotonic), what is left is not used


class Leases:
    """Per key, requests counted by the shared limiter ahead of use, spent in this process."""

    def __init__(
        self,
        limiter: IGrantingRateLimiter,
        limit: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = limiter
        self.limit = limit
        self.window_seconds = window_seconds
        self.cap = min(MAX_GRANT, limit // 100)
        self.seconds = min(1.0, window_seconds / 100)
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._refused: dict[str, float] = {}  # key -> when the limiter said a slot frees

    async def hit(self, key: str) -> float:
        """0.0 if a request of ``key`` may go ahead (counted), else seconds to wait."""
        now = self._clock()
        lease = self._leases.get(key)
        if lease is not None and lease.left > 0 and now < lease.until:
            lease.left -= 1
            lease.used += 1
            return 0.0
        free_at = self._refused.get(key)
        if free_at is not None:
            if now < free_at:
                return free_at - now
            del self._refused[key]
        size = self._next_size(lease, now)
        granted, wait = await self.limiter.take_async(key, size, self.limit, self.window_seconds)
        now = self._clock()
        if not granted:
            if len(self._refused) >= MAX_LEASED_KEYS:
                self._forget(now)
            self._refused[key] = now + wait
            return wait
        current = self._leases.get(key)
        if current is not lease and current is not None and now < current.until:
            current.left += granted - 1  # another request of this key was granted meanwhile
            current.used += 1
            return 0.0
        if len(self._leases) >= MAX_LEASED_KEYS:
            self._forget(now)
        self._leases[key] = _Lease(granted - 1, size, 1, now + self.seconds)
        return 0.0

    def _next_size(self, lease: _Lease | None, now: float) -> int:
        if lease is None:
            return 1
        if now < lease.until:  # used up early: more demand than the grant
            return min(self.cap, 2 * lease.size)
        return max(1, min(self.cap, lease.used))  # as many as its period used

    def _forget(self, now: float) -> None:
        for key in [k for k, lease in self._leases.items() if now >= lease.until]:
            del self._leases[key]
        for key in [k for k, free_at in self._refused.items() if now >= free_at]:
            del self._refused[key]
        if len(self._leases) >= MAX_LEASED_KEYS:  # all current: give them up (stricter, never looser)
            self._leases.clear()
        if len(self._refused) >= MAX_LEASED_KEYS:  # the limiter is asked again (exact, just slower)
            self._refused.clear()


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
        #: grants for busy keys, when the limiter can count several at once and
        #: the budget is large enough for grants of two or more
        self.leases: Leases | None = None
        if hasattr(limiter, "take_async") and self.asynchronous:
            leases = Leases(cast(IGrantingRateLimiter, limiter), max_requests, window_seconds)
            self.leases = leases if leases.cap >= 2 else None

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
            if self.leases is not None:
                wait = await self.leases.hit(identity)
            else:
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
