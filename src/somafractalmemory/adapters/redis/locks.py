"""``RedisLockManager``: named locks shared by every process using one Redis.

Acquire is ``SET key token NX PX ttl`` with a random token, retried with
jittered backoff until ``timeout`` (then ``LockTimeout``). ``GET`` on the
same ``SET`` makes a retried command safe: if our first attempt reached
Redis but its reply was lost, the retry sees our own token and succeeds.
Release is a Lua compare-and-delete, so a holder whose lock expired can
never delete a lock someone else acquired since. Unlike the cache, locks do
not degrade: an unreachable Redis raises ``BackendUnavailable``.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from typing import Any

from ...errors import InvalidInput, LockTimeout
from .client import Redis, RedisError, ping, resolve, unavailable

__all__ = ["RedisLock", "RedisLockManager"]

log = logging.getLogger(__name__)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLock:
    """A held lock; ``release`` is idempotent."""

    def __init__(self, manager: RedisLockManager, key: str, token: str) -> None:
        self._manager = manager
        self.key = key
        self.token = token
        self._released = False

    def release(self) -> None:
        """Release if still ours. If Redis cannot be reached the lock is left to
        expire after its ``ttl_seconds`` (a warning is logged)."""
        if self._released:
            return
        self._released = True
        try:
            self._manager._release(keys=[self.key], args=[self.token])
        except RedisError as exc:
            log.warning("lock %s not released, it expires by its ttl: %s", self.key, unavailable(exc))

    def __enter__(self) -> RedisLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RedisLockManager:
    """Mutual exclusion across processes; lock ``n`` is the key ``{prefix}lock:n``."""

    name = "redis"

    def __init__(self, client: Redis | str | None = None, *, prefix: str = "soma:", **connect: Any) -> None:
        """``client``: a ``redis.Redis`` (not closed by us), a URL, or ``None``
        with ``connect`` options for ``build_client``."""
        self._client, self._owned = resolve(client, connect)
        self.prefix = prefix + "lock:"
        self._release = self._client.register_script(_RELEASE)

    def acquire(self, name: str, timeout: float = 10.0, ttl_seconds: float = 30.0) -> RedisLock:
        if not ttl_seconds > 0:
            raise InvalidInput("ttl_seconds", f"must be > 0, got {ttl_seconds}")
        key = self.prefix + name
        token = secrets.token_hex(16)
        px = max(1, round(ttl_seconds * 1000))
        deadline = time.monotonic() + max(0.0, timeout)
        delay = 0.005
        while True:
            try:
                previous = self._client.set(key, token, nx=True, px=px, get=True)
            except RedisError as exc:
                raise unavailable(exc) from exc
            if previous is None or previous == token.encode():
                return RedisLock(self, key, token)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout(f"lock {name!r} is held by another owner; not acquired within {timeout}s")
            time.sleep(min(remaining, delay * random.uniform(0.5, 1.0)))
            delay = min(delay * 2, 0.1)

    def health(self) -> None:
        ping(self._client)

    def close(self) -> None:
        if self._owned:
            self._client.close()
