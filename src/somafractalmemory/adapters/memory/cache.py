"""In-process cache, locks and rate limiter (``ICache``, ``ILockManager``, ``IRateLimiter``).

They share nothing across processes: use the Redis adapters when several API
processes must agree. All three are thread-safe and use ``time.monotonic``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Sequence

from ...errors import InvalidInput, LockTimeout

__all__ = ["InMemoryCache", "InMemoryLock", "InMemoryLockManager", "InMemoryRateLimiter"]


class InMemoryCache:
    """A byte cache with per-entry expiry and least-recently-used eviction
    beyond ``max_entries``. Expired entries are dropped when read or evicted."""

    name = "memory"

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max_entries = max(1, max_entries)
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._lock = threading.Lock()

    def _read(self, key: str, now: float) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._read(key, time.monotonic())

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        now = time.monotonic()
        out: dict[str, bytes] = {}
        with self._lock:
            for key in keys:
                value = self._read(key, now)
                if value is not None:
                    out[key] = value
        return out

    def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        expires = None if ttl_seconds is None else time.monotonic() + ttl_seconds
        with self._lock:
            self._data[key] = (bytes(value), expires)
            self._data.move_to_end(key)
            while len(self._data) > self._max_entries:
                self._data.popitem(last=False)

    def delete(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def health(self) -> None:
        return None

    def close(self) -> None:
        with self._lock:
            self._data.clear()


class InMemoryLock:
    """A held lock; releasing twice, or after the lock expired, does nothing."""

    def __init__(self, manager: InMemoryLockManager, name: str, token: str) -> None:
        self._manager = manager
        self.name = name
        self._token = token

    def release(self) -> None:
        self._manager._release(self.name, self._token)

    def __enter__(self) -> InMemoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class InMemoryLockManager:
    """Named locks with expiry: a holder that outlives ``ttl_seconds`` loses
    the lock to the next waiter."""

    name = "memory"

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}  # name -> (token, expires at)
        self._cond = threading.Condition()

    def acquire(self, name: str, timeout: float = 10.0, ttl_seconds: float = 30.0) -> InMemoryLock:
        if ttl_seconds <= 0:
            raise InvalidInput("ttl_seconds", "must be > 0")
        deadline = time.monotonic() + max(0.0, timeout)
        token = uuid.uuid4().hex
        with self._cond:
            while True:
                now = time.monotonic()
                holder = self._held.get(name)
                if holder is None or holder[1] <= now:
                    self._held[name] = (token, now + ttl_seconds)
                    return InMemoryLock(self, name, token)
                if now >= deadline:
                    raise LockTimeout(f"lock {name!r} not acquired within {timeout}s")
                self._cond.wait(min(deadline, holder[1]) - now)

    def _release(self, name: str, token: str) -> None:
        with self._cond:
            holder = self._held.get(name)
            if holder is not None and holder[0] == token:
                del self._held[name]
                self._cond.notify_all()


class InMemoryRateLimiter:
    """Sliding window: a key may make ``limit`` requests in any ``window_seconds``."""

    name = "memory"

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._windows: dict[str, float] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def hit(self, key: str, limit: int, window_seconds: float) -> float:
        if window_seconds <= 0:
            raise InvalidInput("window_seconds", "must be > 0")
        now = time.monotonic()
        with self._lock:
            self._calls += 1
            if self._calls % 10_000 == 0:
                self._prune(now)
            hits = self._hits.setdefault(key, deque())
            self._windows[key] = window_seconds
            while hits and hits[0] <= now - window_seconds:
                hits.popleft()
            if len(hits) < limit:
                hits.append(now)
                return 0.0
            if not hits:  # limit <= 0: nothing is ever allowed
                return window_seconds
            return max(hits[len(hits) - limit] + window_seconds - now, 1e-3)

    def _prune(self, now: float) -> None:
        """Forget keys whose every hit has left its window."""
        stale = [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self._windows[k]]
        for key in stale:
            del self._hits[key]
            del self._windows[key]
