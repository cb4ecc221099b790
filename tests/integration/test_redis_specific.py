"""What only Redis does: cross-process locks, shared rate limits, TTL expiry,
and the cached canonical store staying correct around invalidation races.

Runs on the shared test Redis; every test uses its own key prefix.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
import redis

from somafractalmemory.adapters.hybrid import CachedKeyValueStore
from somafractalmemory.adapters.memory.kv import InMemoryKeyValueStore
from somafractalmemory.adapters.redis import RedisCache, RedisLockManager, RedisRateLimiter, build_client
from somafractalmemory.adapters.redis.ratelimit import MAX_TAKE
from somafractalmemory.errors import BackendUnavailable, ConfigurationError, InvalidInput, LockTimeout
from somafractalmemory.models import HistoryEntry, Memory, MemoryType, memory_id

pytestmark = pytest.mark.redis


def _memory(namespace: str, x: float, text: str, version: int = 1) -> Memory:
    now = time.time()
    coord = (x, 0.0)
    return Memory(
        memory_id(namespace, coord), namespace, coord, {"text": text}, MemoryType.SEMANTIC, now, now, version
    )


def _delete_prefix(url: str, prefix: str) -> int:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()
    return len(keys)


@pytest.fixture
def store(redis_prefix: tuple[str, str]) -> Iterator[CachedKeyValueStore]:
    url, prefix = redis_prefix
    hybrid = CachedKeyValueStore(InMemoryKeyValueStore(), RedisCache(url, prefix=prefix), ttl_seconds=60)
    yield hybrid
    hybrid.close()


# -- locks ----------------------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys, time, redis
    from somafractalmemory.adapters.redis import RedisLockManager

    url, prefix, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    locks = RedisLockManager(url, prefix=prefix)
    raw = redis.Redis.from_url(url)
    overlaps = 0
    for _ in range(rounds):
        with locks.acquire("counter", timeout=20, ttl_seconds=10):
            if not raw.set(prefix + "holder", b"1", nx=True):
                overlaps += 1
            value = int(raw.get(prefix + "count") or 0)
            time.sleep(0.002)
            raw.set(prefix + "count", value + 1)
            raw.delete(prefix + "holder")
    print(overlaps)
    """
)


def test_lock_is_exclusive_across_processes(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    rounds = 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, prefix, str(rounds)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert [int(out) for out in outputs] == [0, 0, 0]  # nobody ever saw another holder inside
    # an unprotected read-modify-write would lose increments
    assert int(redis.Redis.from_url(url).get(prefix + "count") or 0) == 3 * rounds


def test_lock_of_a_dead_holder_expires(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    script = (
        "import os, sys; from somafractalmemory.adapters.redis import RedisLockManager; "
        "RedisLockManager(sys.argv[1], prefix=sys.argv[2]).acquire('job', ttl_seconds=0.5); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", script, url, prefix], check=True, timeout=30)
    locks = RedisLockManager(url, prefix=prefix)
    with pytest.raises(LockTimeout):
        locks.acquire("job", timeout=0.05)
    started = time.monotonic()
    with locks.acquire("job", timeout=5):
        assert time.monotonic() - started < 1.0
    locks.close()


def test_expired_holder_cannot_release_the_next_owner(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    locks = RedisLockManager(url, prefix=prefix)
    first = locks.acquire("job", ttl_seconds=0.2)
    time.sleep(0.3)
    second = locks.acquire("job", timeout=1)
    first.release()  # compare-and-delete: not ours any more, nothing happens
    with pytest.raises(LockTimeout):
        locks.acquire("job", timeout=0.1)
    second.release()
    locks.acquire("job", timeout=0.1).release()
    locks.close()


# -- rate limiter -----------------------------------------------------------


def test_rate_limit_is_shared_and_atomic_across_clients(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    limiters = [RedisRateLimiter(url, prefix=prefix) for _ in range(4)]  # 4 connection pools
    results: list[float] = []
    lock = threading.Lock()

    def hammer(limiter: RedisRateLimiter) -> None:
        for _ in range(60):
            wait = limiter.hit("api-key-1", limit=100, window_seconds=30)
            with lock:
                results.append(wait)

    threads = [threading.Thread(target=hammer, args=(lim,)) for lim in limiters for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    allowed = [w for w in results if w == 0.0]
    refused = [w for w in results if w > 0.0]
    assert len(allowed) == 100 and len(refused) == 380
    assert all(0 < w <= 30 for w in refused)
    assert limiters[0].hit("api-key-2", limit=100, window_seconds=30) == 0.0  # keys are independent
    for limiter in limiters:
        limiter.close()


def test_rate_limit_window_slides(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    a, b = RedisRateLimiter(url, prefix=prefix), RedisRateLimiter(url, prefix=prefix)
    assert a.hit("k", 2, 0.5) == 0.0
    time.sleep(0.25)
    assert b.hit("k", 2, 0.5) == 0.0
    wait = a.hit("k", 2, 0.5)
    assert 0.1 < wait <= 0.26  # the first hit leaves the window first
    time.sleep(wait + 0.02)
    assert b.hit("k", 2, 0.5) == 0.0  # one slot freed, not the whole window
    assert a.hit("k", 2, 0.5) > 0.0
    a.close()
    b.close()


def test_rate_limit_on_an_event_loop_shares_the_budget_of_the_blocking_one(
    redis_prefix: tuple[str, str],
) -> None:
    url, prefix = redis_prefix
    blocking, looped = RedisRateLimiter(url, prefix=prefix), RedisRateLimiter(url, prefix=prefix)
    assert looped.asynchronous
    assert not RedisRateLimiter(redis.Redis.from_url(url), prefix=prefix).asynchronous  # injected client

    async def main() -> list[float]:
        waits = list(await asyncio.gather(*(looped.hit_async("k", 50, 30) for _ in range(40))))
        waits += [blocking.hit("k", 50, 30) for _ in range(10)]  # 50 counted: the budget is spent
        waits.append(await looped.hit_async("k", 50, 30))
        waits.append(await looped.hit_async("other", 50, 30))
        assert await looped.hit_async("k", 0, 30) == 30.0  # a limit below 1 allows nothing
        with pytest.raises(InvalidInput, match="window_seconds"):
            await looped.hit_async("k", 5, 0)
        await looped.aclose()
        return waits

    waits = asyncio.run(main())
    assert waits[:50] == [0.0] * 50 and 0 < waits[50] <= 30 and waits[51] == 0.0
    assert asyncio.run(looped.hit_async("k", 50, 30)) > 0  # a new loop gets connections of its own
    blocking.close()
    looped.close()


def test_take_counts_as_many_requests_as_the_budget_has_room_for(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    looped, blocking = RedisRateLimiter(url, prefix=prefix), RedisRateLimiter(url, prefix=prefix)

    async def main() -> list[tuple[int, float]]:
        taken = [await looped.take_async("k", 4, 10, 30), await looped.take_async("k", 10, 10, 30)]
        taken.append(await looped.take_async("k", 1, 10, 30))
        taken.append(await looped.take_async("k", 1, 0, 30))  # a limit below 1 allows nothing
        for bad in (0, MAX_TAKE + 1):
            with pytest.raises(InvalidInput, match="n"):
                await looped.take_async("k", bad, 10, 30)
        await looped.aclose()
        return taken

    taken = asyncio.run(main())
    assert taken[:2] == [(4, 0.0), (6, 0.0)]  # the second gets what was left
    assert taken[2][0] == 0 and 0 < taken[2][1] <= 30 and taken[3] == (0, 30.0)
    assert 0 < blocking.hit("k", 10, 30) <= 30  # all ten counted, for everyone
    raw = redis.Redis.from_url(url)
    assert raw.zcard(prefix + "rl:k") == 10
    raw.close()
    looped.close()
    blocking.close()


def test_rate_limit_on_an_event_loop_raises_when_redis_is_unreachable() -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{_closed_port()}/0")
    with pytest.raises(BackendUnavailable, match="REDIS_URL"):
        asyncio.run(limiter.hit_async("k", 1, 1.0))


# -- cache -------------------------------------------------------------------


def test_cache_entries_expire_by_ttl(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    cache = RedisCache(url, prefix=prefix)
    cache.set("short", b"1", ttl_seconds=0.3)
    cache.set("forever", b"2")
    raw = redis.Redis.from_url(url)
    assert 0 < raw.pttl(prefix + "cache:short") <= 300
    assert raw.pttl(prefix + "cache:forever") == -1
    assert cache.get_many(["short", "forever", "none"]) == {"short": b"1", "forever": b"2"}
    time.sleep(0.45)
    assert cache.get("short") is None
    assert cache.get("forever") == b"2"
    raw.close()
    cache.close()


def test_adapters_sharing_one_prefix_do_not_collide(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    cache = RedisCache(url, prefix=prefix)
    locks = RedisLockManager(url, prefix=prefix)
    limiter = RedisRateLimiter(url, prefix=prefix)
    cache.set("x", b"cached")
    with locks.acquire("x", timeout=0.5):
        assert limiter.hit("x", 1, 10) == 0.0
        assert cache.get("x") == b"cached"
    raw = redis.Redis.from_url(url)
    assert sorted(raw.scan_iter(match=prefix + "*")) == [
        f"{prefix}{kind}:x".encode() for kind in ("cache", "rl")
    ]
    raw.close()
    for adapter in (cache, locks, limiter):
        adapter.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_redis_cache_degrades_locks_and_limits_raise() -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    cache = RedisCache(url)
    started = time.monotonic()
    cache.set("k", b"v")
    assert cache.get("k") is None and cache.get_many(["k"]) == {}
    cache.delete(["k"])
    assert time.monotonic() - started < 2.0
    with pytest.raises(BackendUnavailable, match="REDIS_URL"):
        cache.health()
    with pytest.raises(BackendUnavailable, match="REDIS_URL"):
        RedisLockManager(url).acquire("x", timeout=0.1)
    with pytest.raises(BackendUnavailable):
        RedisRateLimiter(url).hit("k", 1, 1.0)
    cache.close()


def test_bad_url_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        RedisCache("http://127.0.0.1:6379")


def test_client_options_tls_and_short_timeouts() -> None:
    tls = build_client("rediss://cache.example:6380/2", ssl_ca_certs="/etc/ca.pem")
    assert tls.connection_pool.connection_class.__name__ == "SSLConnection"
    kwargs = tls.connection_pool.connection_kwargs
    assert (kwargs["ssl_ca_certs"], kwargs["db"], kwargs["socket_timeout"]) == ("/etc/ca.pem", 2, 0.5)
    plain = build_client(host="cache.example", port=6390, db=3, socket_timeout=0.1)
    kwargs = plain.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == (
        "cache.example",
        6390,
        3,
        0.1,
    )
    assert plain.connection_pool.connection_class.__name__ == "Connection"
    assert build_client(host="h", ssl=True).connection_pool.connection_class.__name__ == "SSLConnection"


def test_missing_driver_names_the_extra() -> None:
    script = (
        "import sys; sys.modules['redis'] = None\n"
        "from somafractalmemory.errors import MissingDependency\n"
        "try:\n    import somafractalmemory.adapters.redis\n"
        "except MissingDependency as exc:\n    assert isinstance(exc, ImportError); print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert "pip install 'somafractalmemory[redis]'" in out.stdout


# -- the cached canonical store ------------------------------------------------


def _put(store: CachedKeyValueStore, memories: Sequence[Memory]) -> None:
    store.put_many(memories, [])


def test_hybrid_read_after_update_and_delete(store: CachedKeyValueStore, namespace: str) -> None:
    a, b = _memory(namespace, 1, "a v1"), _memory(namespace, 2, "b v1")
    _put(store, [a, b])
    assert store.get_many(namespace, [a.id, b.id]) == {a.id: a, b.id: b}
    assert store.get_many(namespace, [a.id, b.id]) == {a.id: a, b.id: b}
    assert store.stats["hits"] == 2  # the second read came from Redis
    a2 = _memory(namespace, 1, "a v2", version=2)
    _put(store, [a2])
    assert store.get_many(namespace, [a.id]) == {a.id: a2}
    deleted = store.delete_many(namespace, [b.id], [])
    assert deleted == [b.id]
    assert store.get_many(namespace, [a.id, b.id]) == {a.id: a2}
    assert store.get_many(namespace, [b.id]) == {}


def test_hybrid_survives_its_keys_vanishing(
    store: CachedKeyValueStore, redis_prefix: tuple[str, str], namespace: str
) -> None:
    url, prefix = redis_prefix
    memories = [_memory(namespace, x, f"m{x}") for x in range(20)]
    _put(store, memories)
    ids = [m.id for m in memories]
    store.get_many(namespace, ids)
    assert _delete_prefix(url, prefix) >= 40  # data and token keys, only ours
    assert store.get_many(namespace, ids) == {m.id: m for m in memories}
    updated = [_memory(namespace, x, f"m{x} v2", 2) for x in range(10)]
    _put(store, updated)
    store.delete_many(namespace, ids[10:15], [])
    _delete_prefix(url, prefix)
    expected = {m.id: m for m in updated + memories[15:]}
    assert store.get_many(namespace, ids) == expected
    assert store.get_many(namespace, ids) == expected
    assert store.stats["hits"] >= len(expected)


def test_two_stores_on_one_cache_see_each_others_writes(
    redis_prefix: tuple[str, str], namespace: str
) -> None:
    """Two API processes: one canonical store, one Redis, two clients."""
    url, prefix = redis_prefix
    canonical = InMemoryKeyValueStore()
    writer = CachedKeyValueStore(canonical, RedisCache(url, prefix=prefix))
    reader = CachedKeyValueStore(canonical, RedisCache(url, prefix=prefix))
    m1 = _memory(namespace, 1, "v1")
    writer.put_many([m1], [])
    assert reader.get_many(namespace, [m1.id]) == {m1.id: m1}
    assert reader.get_many(namespace, [m1.id]) == {m1.id: m1}
    assert reader.stats["hits"] == 1
    m2 = _memory(namespace, 1, "v2", 2)
    writer.put_many([m2], [])
    assert reader.get_many(namespace, [m1.id]) == {m1.id: m2}
    writer.delete_many(namespace, [m1.id], [])
    assert reader.get_many(namespace, [m1.id]) == {}
    writer.cache.close()
    reader.cache.close()


class _SlowReads(InMemoryKeyValueStore):
    """A real in-process store whose next ``get_many`` pauses after reading,
    to hold a read-through fill open while a write happens."""

    def __init__(self) -> None:
        super().__init__()
        self.read_done = threading.Event()
        self.may_return = threading.Event()
        self.pause_next = False

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Memory]:
        found = super().get_many(namespace, ids)
        if self.pause_next:
            self.pause_next = False
            self.read_done.set()
            self.may_return.wait(10)
        return found


def test_a_slow_fill_cannot_reinstate_an_overwritten_value(
    redis_prefix: tuple[str, str], namespace: str
) -> None:
    """Reader misses and reads v1; a writer stores v2 and invalidates; the
    reader then writes v1 into the cache. That late fill must never be served."""
    url, prefix = redis_prefix
    canonical = _SlowReads()
    reader = CachedKeyValueStore(canonical, RedisCache(url, prefix=prefix))
    writer = CachedKeyValueStore(canonical, RedisCache(url, prefix=prefix))
    v1 = _memory(namespace, 1, "v1")
    writer.put_many([v1], [])
    canonical.pause_next = True
    seen: dict[str, Memory] = {}
    thread = threading.Thread(target=lambda: seen.update(reader.get_many(namespace, [v1.id])))
    thread.start()
    assert canonical.read_done.wait(10)
    v2 = _memory(namespace, 1, "v2", 2)
    writer.put_many([v2], [])
    canonical.may_return.set()
    thread.join(10)
    assert seen == {v1.id: v1}  # concurrent with the write: the old value is fine
    raw = redis.Redis.from_url(url)
    assert any(
        b"v1" in (raw.get(k) or b"") for k in raw.scan_iter(match=prefix + "cache:kv:d:*")
    )  # the late fill
    raw.close()
    fresh = CachedKeyValueStore(canonical, RedisCache(url, prefix=prefix))  # no in-process memory
    for store in (reader, writer, fresh):
        assert store.get_many(namespace, [v1.id]) == {v1.id: v2}
        store.cache.close()


def test_history_and_queries_pass_through(store: CachedKeyValueStore, namespace: str) -> None:
    m = _memory(namespace, 1, "hello")
    entry = HistoryEntry(namespace, m.id, m.coordinate, 1, "created", m.payload, m.memory_type, m.created_at)
    store.put_many([m], [entry])
    assert [h.action for h in store.history(namespace, m.id)] == ["created"]
    assert store.counts(namespace)["total"] == 1
    assert namespace in store.namespaces()
    assert store.find_range(namespace, (0.0, -1.0), (2.0, 1.0)) == [m]
    store.health()
