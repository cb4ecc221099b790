"""``RedisCache``: the ``ICache`` port on Redis, for a cache that may vanish.

Failure model (the port: cache failures never fail the caller):

* A read that cannot reach Redis is a miss; a ``set`` that cannot is
  dropped. A warning is logged, at most one per ``WARN_EVERY`` seconds.
* After a failure the cache stays quiet for ``cooldown_seconds`` (a circuit
  breaker): a dead or paused Redis costs one socket timeout, not one per call.
* Deletes are invalidations, so losing one could let a stale value be served
  later. A delete Redis did not acknowledge goes into a journal and is sent
  again, by a background thread every ``cooldown_seconds`` and before any
  other call of this client; until the journal is empty this client serves
  nothing from Redis. Past ``max_pending`` journalled keys, every key under
  the prefix is dropped on recovery instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

from .client import Redis, RedisError, ping, resolve, unavailable

__all__ = ["RedisCache"]

log = logging.getLogger(__name__)
WARN_EVERY = 30.0
_GLOB_SPECIAL = "\\*?[]"


def _chunks(items: Sequence[str], size: int = 1000) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RedisCache:
    """A byte cache with expiry; key ``k`` is stored as ``{prefix}cache:k``."""

    name = "redis"

    def __init__(
        self,
        client: Redis | str | None = None,
        *,
        prefix: str = "soma:",
        cooldown_seconds: float = 1.0,
        max_pending: int = 100_000,
        **connect: Any,
    ) -> None:
        """``client``: a ``redis.Redis`` (not closed by us), a URL, or ``None``
        with ``connect`` options for ``build_client`` (host, port, db, ...)."""
        self._client, self._owned = resolve(client, connect)
        self.prefix = prefix + "cache:"
        self._cooldown = cooldown_seconds
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._purge_wanted = 0  # bumped when the journal overflows
        self._purge_done = 0
        self._down_until = 0.0
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()
        self._warned_at = -WARN_EVERY
        self._suppressed = 0

    @property
    def pending_invalidations(self) -> int:
        """Keys whose delete Redis has not acknowledged yet."""
        with self._lock:
            return len(self._pending) + (self._purge_wanted != self._purge_done)

    def get(self, key: str) -> bytes | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        keys = list(keys)
        if not keys or not self._usable():
            return {}
        try:
            values = cast(list[bytes | None], self._client.mget([self.prefix + k for k in keys]))
        except RedisError as exc:
            self._failed("read", exc)
            return {}
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        if not self._usable():
            return
        px = None if ttl_seconds is None else max(1, round(ttl_seconds * 1000))
        try:
            self._client.set(self.prefix + key, value, px=px)
        except RedisError as exc:
            self._failed("write", exc)

    def delete(self, keys: Sequence[str]) -> None:
        full = {self.prefix + k for k in keys}
        if not full:
            return
        with self._lock:
            self._pending |= full
            if len(self._pending) > self._max_pending:
                self._pending.clear()
                self._purge_wanted += 1
        if time.monotonic() < self._down_until or not self._flush():
            self._start_flusher()

    def health(self) -> None:
        ping(self._client)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self.pending_invalidations:
            self._flush()
        if self._owned:
            self._client.close()

    # -- failure handling -------------------------------------------------

    def _usable(self) -> bool:
        """Whether to talk to Redis now: not in cooldown, journal flushed."""
        if time.monotonic() < self._down_until:
            return False
        with self._lock:
            clean = not self._pending and self._purge_wanted == self._purge_done
        return clean or self._flush()

    def _flush(self) -> bool:
        """Send the journalled deletes; true when the batch was acknowledged."""
        with self._lock:
            batch = sorted(self._pending)
            purge = self._purge_wanted if self._purge_wanted != self._purge_done else 0
        try:
            if purge:
                self._purge_prefix()
            for chunk in _chunks(batch):
                self._client.delete(*chunk)
        except RedisError as exc:
            self._failed("invalidation", exc)
            return False
        with self._lock:
            self._pending.difference_update(batch)
            self._purge_done = max(self._purge_done, purge)
        return True

    def _purge_prefix(self) -> None:
        pattern = "".join("\\" + c if c in _GLOB_SPECIAL else c for c in self.prefix) + "*"
        found: list[Any] = []
        for key in self._client.scan_iter(match=pattern, count=1000):
            found.append(key)
            if len(found) >= 1000:
                self._client.unlink(*found)
                found.clear()
        if found:
            self._client.unlink(*found)

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None or self._closed.is_set():
                return
            self._flusher = threading.Thread(
                target=self._flush_loop, name="soma-redis-cache-invalidation", daemon=True
            )
            self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closed.wait(self._cooldown):
            with self._lock:
                if not self._pending and self._purge_wanted == self._purge_done:
                    self._flusher = None
                    return
            try:
                self._flush()
            except Exception:  # e.g. the client closed under us; retried next round
                log.debug("cache invalidation retry failed", exc_info=True)
        with self._lock:
            self._flusher = None

    def _failed(self, operation: str, exc: RedisError) -> None:
        now = time.monotonic()
        with self._lock:
            self._down_until = now + self._cooldown
            if now - self._warned_at < WARN_EVERY:
                self._suppressed += 1
                return
            self._warned_at, suppressed, self._suppressed = now, self._suppressed, 0
        more = f"; {suppressed} similar warnings suppressed" if suppressed else ""
        log.warning("cache %s skipped, continuing without it: %s%s", operation, unavailable(exc), more)
