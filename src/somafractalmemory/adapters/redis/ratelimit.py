"""``RedisRateLimiter``: a sliding-window budget shared by every process.

One sorted set per key holds the timestamps (microseconds, from Redis'
own clock, so processes on different hosts agree) of the requests counted
in the last ``window_seconds``. A Lua script trims the expired ones, counts,
and either records the request or answers how long until the oldest one
leaves the window; Redis runs scripts one at a time, so the check and the
count are atomic across processes. Nothing is counted for a refused request.

``hit_async`` is the same on an event loop (``redis.asyncio``, a connection
pool of its own per loop): the API checks every request's budget, and a
thread hop for each cost more than the check itself. ``take_async`` counts
up to ``n`` requests at once, as many as the budget has room for: the API
takes a busy key's budget in such grants and spends them in the process
(``api.ratelimit.Leases``), one round trip for many requests.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from ...errors import InvalidInput
from .client import AsyncRedis, Redis, RedisError, build_async_client, ping, resolve, unavailable

__all__ = ["RedisRateLimiter"]

_HIT = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000000 + tonumber(now_t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local want = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
    local granted = math.min(want, limit - count)
    local members = {}
    for i = 1, granted do
        members[2 * i - 1] = now
        members[2 * i] = now .. ':' .. ARGV[3] .. ':' .. i
    end
    redis.call('ZADD', KEYS[1], unpack(members))
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
    return {granted, 0}
end
-- allowed again once enough hits have left for the count to drop below limit
local nth = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return {0, math.max(1, tonumber(nth[2]) + window - now)}
"""

#: The most requests one ``take_async`` counts (members added by one script run).
MAX_TAKE = 1000


class RedisRateLimiter:
    """``hit`` counts one request against ``limit`` per ``window_seconds``;
    key ``k`` is the sorted set ``{prefix}rl:k``."""

    name = "redis"

    def __init__(self, client: Redis | str | None = None, *, prefix: str = "soma:", **connect: Any) -> None:
        """``client``: a ``redis.Redis`` (not closed by us), a URL, or ``None``
        with ``connect`` options for ``build_client``."""
        self._client, self._owned = resolve(client, connect)
        self.prefix = prefix + "rl:"
        self._script = self._client.register_script(_HIT)
        # an injected client's settings are its own: then there is no async twin
        self._async_source = None if isinstance(client, Redis) else (client, connect)
        self._async: tuple[asyncio.AbstractEventLoop, AsyncRedis, Any] | None = None

    @property
    def asynchronous(self) -> bool:
        """Whether ``hit_async`` talks to Redis itself (else it is unavailable)."""
        return self._async_source is not None

    def hit(self, key: str, limit: int, window_seconds: float) -> float:
        """0.0 if allowed (and counted), else seconds until one would be.
        A ``limit`` below 1 allows nothing (the answer is the window)."""
        args = self._args(limit, window_seconds, 1)
        if args is None:
            return float(window_seconds)
        try:
            _, wait_us = self._script(keys=[self.prefix + key], args=args)
        except RedisError as exc:
            raise unavailable(exc) from exc
        return int(wait_us) / 1_000_000

    async def hit_async(self, key: str, limit: int, window_seconds: float) -> float:
        """``hit`` without blocking the running event loop."""
        _, wait = await self.take_async(key, 1, limit, window_seconds)
        return wait

    async def take_async(self, key: str, n: int, limit: int, window_seconds: float) -> tuple[int, float]:
        """Count up to ``n`` requests (at most ``MAX_TAKE``) at once, as many as
        the budget has room for: ``(counted, 0.0)``, or ``(0, seconds until
        one would be allowed)`` when it has none. On the running event loop."""
        if not 1 <= n <= MAX_TAKE:
            raise InvalidInput("n", f"must be between 1 and {MAX_TAKE}, got {n}")
        args = self._args(limit, window_seconds, n)
        if args is None:
            return 0, float(window_seconds)
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            if self._async_source is None:
                raise RuntimeError("hit_async needs a limiter built from a URL or connect options")
            url, connect = self._async_source
            client = build_async_client(url, **connect)
            self._async = (loop, client, client.register_script(_HIT))
        try:
            granted, wait_us = await self._async[2](keys=[self.prefix + key], args=args)
        except RedisError as exc:
            raise unavailable(exc) from exc
        return int(granted), int(wait_us) / 1_000_000

    async def aclose(self) -> None:
        """Close the event loop's connections (call on that loop)."""
        if self._async is not None:
            _, client, _ = self._async
            self._async = None
            await client.aclose()

    @staticmethod
    def _args(limit: int, window_seconds: float, n: int) -> list[Any] | None:
        if not window_seconds > 0:
            raise InvalidInput("window_seconds", f"must be > 0, got {window_seconds}")
        if limit < 1:
            return None
        return [limit, max(1, round(window_seconds * 1_000_000)), secrets.token_hex(8), n]

    def health(self) -> None:
        ping(self._client)

    def close(self) -> None:
        if self._owned:
            self._client.close()
