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

Three calls beyond the ``ICache`` port serve the read-through cache
(``adapters.hybrid``) in one round trip each, whatever the number of keys:
``read_tagged`` reads (data, token) pairs and creates the missing tokens
(a Lua script, so "read the token, or create it" is atomic), ``set_many``
stores many values with one expiry, and ``delete_begin`` sends a delete
whose answer the caller collects later (overlapping a canonical write).
Their commands are packed here, not by redis-py (see ``_pack``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from .client import NoScriptError, Redis, RedisConnectionError, RedisError, ping, resolve, unavailable

__all__ = ["RedisCache"]

#: KEYS: data and token key of each entry, interleaved; ARGV: the token's expiry
#: (ms), a random base. Per entry: an existing token and the data beside it,
#: or - no token - a fresh one (``base .. entry number``), set before returning.
_READ_TAGGED = """
local px, base, out = ARGV[1], ARGV[2], {}
for i = 1, #KEYS, 2 do
    local token = redis.call('GET', KEYS[i + 1])
    if token then
        out[i] = redis.call('GET', KEYS[i])
        out[i + 1] = token
    else
        token = base .. ((i + 1) / 2)
        redis.call('SET', KEYS[i + 1], token, 'PX', px)
        out[i] = false
        out[i + 1] = token
    end
end
return out
"""

#: KEYS: the keys; ARGV: the expiry (ms), then one value per key.
_SET_MANY = """
local px = ARGV[1]
for i = 1, #KEYS do
    redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', px)
end
return #KEYS
"""

log = logging.getLogger(__name__)
WARN_EVERY = 30.0
_T = TypeVar("_T")
_GLOB_SPECIAL = "\\*?[]"


def _sha1(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()  # a script's name in Redis


def _nothing() -> None:
    return None


def _pack(args: Sequence[bytes | str | int]) -> bytes:
    """A command in the Redis protocol (RESP): strings as UTF-8, ints in decimal."""
    raw = [a if isinstance(a, bytes) else (a.encode() if isinstance(a, str) else b"%d" % a) for a in args]
    parts = [b"*%d\r\n" % len(raw)]
    parts += [b"$%d\r\n%s\r\n" % (len(a), a) for a in raw]
    return b"".join(parts)


def _chunks(items: Sequence[_T], size: int = 1000) -> Iterable[Sequence[_T]]:
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
        self._scripts = {_READ_TAGGED: _sha1(_READ_TAGGED), _SET_MANY: _sha1(_SET_MANY)}

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

    def read_tagged(
        self, pairs: Sequence[tuple[str, str]], token_ttl_seconds: float, base: str
    ) -> list[tuple[bytes | None, bytes]] | None:
        """For each ``(data_key, token_key)``: ``(data, token)``. A token key
        that does not exist is first set to a new token (``base``, then a
        suffix unique within the call), kept ``token_ttl_seconds``; that
        token is returned with no data. One round trip per 1,000 pairs;
        ``None`` when Redis cannot be used (a miss for every pair, and no
        token: nothing may be filled)."""
        if not pairs or not self._usable():
            return None
        px = max(1, round(token_ttl_seconds * 1000))
        out: list[tuple[bytes | None, bytes]] = []
        try:
            for n, chunk in enumerate(_chunks(pairs)):  # a script blocks Redis: keep each one short
                keys = [self.prefix + k for pair in chunk for k in pair]
                values = cast(list[Any], self._script(_READ_TAGGED, keys, [px, f"{base}.{n}."]))
                out += [(values[i], values[i + 1]) for i in range(0, len(values), 2)]
        except RedisError as exc:
            self._failed("read", exc)
            return None
        return out

    def set_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: float) -> None:
        """``set`` of every ``(key, value)`` with one expiry, in one round trip."""
        if not items or not self._usable():
            return
        px = max(1, round(ttl_seconds * 1000))
        try:
            for chunk in _chunks(items):
                self._script(_SET_MANY, [self.prefix + k for k, _ in chunk], [px, *(v for _, v in chunk)])
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

    def delete_begin(self, keys: Sequence[str]) -> Callable[[], None]:
        """``delete(keys)`` in two halves, so a caller overlaps Redis with
        other work (the hybrid store's delete before a canonical write): the
        command is sent now, and the returned function waits for Redis's
        answer. A delete that fails is journalled as ``delete`` does. While
        it is in flight, reads go on being served (the write it precedes
        has not happened yet)."""
        full = [self.prefix + k for k in dict.fromkeys(keys)]
        if not full:
            return _nothing
        if time.monotonic() < self._down_until:
            self.delete(keys)
            return _nothing
        try:
            conn = self._send([b"DEL", *full])
        except RedisError:  # e.g. a stale connection: the ordinary path retries and journals
            self.delete(keys)
            return _nothing

        def finish() -> None:
            try:
                self._receive(conn)
            except RedisError as exc:
                self._failed("invalidation", exc)
                self.delete(keys)

        return finish

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
                self._execute([b"DEL", *chunk])
        except RedisError as exc:
            self._failed("invalidation", exc)
            return False
        with self._lock:
            self._pending.difference_update(batch)
            self._purge_done = max(self._purge_done, purge)
        return True

    # -- commands, packed here -----------------------------------------------
    # redis-py packs a command argument by argument in Python (about 1.3 us
    # each); a cache call has hundreds to thousands of keys, packed here in
    # one join, five times faster. Replies are read by redis-py.

    def _send(self, args: Sequence[bytes | str | int]) -> Any:
        """Send one command on a pooled connection; return the connection."""
        pool = self._client.connection_pool
        conn: Any = pool.get_connection()
        try:
            conn.send_packed_command([_pack(args)], check_health=False)
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        return conn

    def _receive(self, conn: Any) -> Any:
        """The reply to the command sent on ``conn``; the connection goes back to the pool."""
        pool = self._client.connection_pool
        try:
            return conn.read_response()
        except RedisError as exc:
            if not isinstance(exc, NoScriptError):  # a reply error leaves the connection usable
                conn.disconnect()
            raise
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    def _execute(self, args: Sequence[bytes | str | int]) -> Any:
        """One command; a connection error is retried once on a new connection
        (a pooled connection may have died with a server restart)."""
        try:
            return self._receive(self._send(args))
        except RedisConnectionError:
            return self._receive(self._send(args))

    def _script(self, script: str, keys: Sequence[str], args: Sequence[bytes | str | int]) -> Any:
        command: list[bytes | str | int] = [b"EVALSHA", self._scripts[script], len(keys), *keys, *args]
        try:
            return self._execute(command)
        except NoScriptError:  # a restarted or flushed server: load it once, then run it
            self._execute([b"SCRIPT", b"LOAD", script])
            return self._execute(command)

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
