"""Contracts of ``ICache``, ``ILockManager`` and ``IRateLimiter``."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from somafractalmemory.errors import LockTimeout
from somafractalmemory.interfaces.storage import ICache, ILockManager, IRateLimiter


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- cache ------------------------------------------------------------------


def test_cache_implements_the_port(cache: ICache) -> None:
    assert isinstance(cache, ICache)
    assert cache.name
    cache.health()


def test_cache_set_get_and_overwrite(cache: ICache) -> None:
    key = unique("k")
    assert cache.get(key) is None
    cache.set(key, b"\x00one")
    assert cache.get(key) == b"\x00one"
    cache.set(key, b"two")
    assert cache.get(key) == b"two"


def test_cache_entries_expire_after_their_ttl(cache: ICache) -> None:
    short, forever = unique("short"), unique("forever")
    cache.set(short, b"v", ttl_seconds=0.3)
    cache.set(forever, b"w")
    assert cache.get(short) == b"v"
    time.sleep(0.6)
    assert cache.get(short) is None
    assert cache.get_many([short, forever]) == {forever: b"w"}


def test_cache_delete(cache: ICache) -> None:
    a, b, c = unique("a"), unique("b"), unique("c")
    for key in (a, b, c):
        cache.set(key, key.encode())
    cache.delete([a, c, unique("absent")])
    assert cache.get_many([a, b, c]) == {b: b.encode()}
    cache.delete([])


def test_cache_get_many_leaves_out_misses(cache: ICache) -> None:
    a, b = unique("a"), unique("b")
    cache.set(a, b"1")
    cache.set(b, b"2")
    assert cache.get_many([a, unique("miss"), b]) == {a: b"1", b: b"2"}
    assert cache.get_many([]) == {}


# --- locks ------------------------------------------------------------------


def test_lock_manager_implements_the_port(lock_manager: ILockManager) -> None:
    assert isinstance(lock_manager, ILockManager)
    assert lock_manager.name


def test_lock_is_exclusive_across_threads(lock_manager: ILockManager) -> None:
    name = unique("lock")
    inside = 0
    most_inside = 0
    done = []
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most_inside
        for _ in range(3):
            with lock_manager.acquire(name, timeout=10.0):
                with guard:
                    inside += 1
                    most_inside = max(most_inside, inside)
                time.sleep(0.01)
                with guard:
                    inside -= 1
        done.append(True)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(done) == 4
    assert most_inside == 1


def test_acquire_times_out_with_lock_timeout(lock_manager: ILockManager) -> None:
    name = unique("lock")
    held = lock_manager.acquire(name, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        lock_manager.acquire(name, timeout=0.3)
    assert time.monotonic() - started >= 0.25
    held.release()


def test_other_names_are_independent(lock_manager: ILockManager) -> None:
    first = lock_manager.acquire(unique("a"), timeout=1.0)
    second = lock_manager.acquire(unique("b"), timeout=0.1)
    second.release()
    first.release()


def test_expired_lock_can_be_taken_by_another(lock_manager: ILockManager) -> None:
    name = unique("lock")
    stale = lock_manager.acquire(name, timeout=1.0, ttl_seconds=0.3)
    started = time.monotonic()
    fresh = lock_manager.acquire(name, timeout=5.0)
    assert 0.2 <= time.monotonic() - started < 4.0
    stale.release()  # the stale holder must not release the new holder's lock
    with pytest.raises(LockTimeout):
        lock_manager.acquire(name, timeout=0.2)
    fresh.release()


def test_release_is_idempotent_and_frees_the_lock(lock_manager: ILockManager) -> None:
    name = unique("lock")
    lock = lock_manager.acquire(name, timeout=1.0)
    lock.release()
    lock.release()
    again = lock_manager.acquire(name, timeout=0.1)
    again.release()


def test_lock_as_context_manager_releases_on_error(lock_manager: ILockManager) -> None:
    name = unique("lock")
    with pytest.raises(RuntimeError), lock_manager.acquire(name, timeout=1.0):
        raise RuntimeError("boom")
    lock_manager.acquire(name, timeout=0.1).release()


def test_waiter_gets_the_lock_when_it_is_released(lock_manager: ILockManager) -> None:
    name = unique("lock")
    held = lock_manager.acquire(name, timeout=1.0)
    timer = threading.Timer(0.2, held.release)
    timer.start()
    started = time.monotonic()
    lock_manager.acquire(name, timeout=5.0).release()
    assert 0.1 <= time.monotonic() - started < 4.0
    timer.join()


# --- rate limiter -------------------------------------------------------------


def test_rate_limiter_implements_the_port(rate_limiter: IRateLimiter) -> None:
    assert isinstance(rate_limiter, IRateLimiter)
    assert rate_limiter.name


def test_rate_limiter_allows_limit_then_says_when_to_retry(rate_limiter: IRateLimiter) -> None:
    key = unique("client")
    assert [rate_limiter.hit(key, 3, 0.3) for _ in range(3)] == [0.0, 0.0, 0.0]
    retry = rate_limiter.hit(key, 3, 0.3)
    assert 0.0 < retry <= 0.3
    assert rate_limiter.hit(key, 3, 0.3) > 0.0


def test_rate_limiter_allows_again_after_the_window(rate_limiter: IRateLimiter) -> None:
    key = unique("client")
    for _ in range(2):
        assert rate_limiter.hit(key, 2, 0.3) == 0.0
    retry = rate_limiter.hit(key, 2, 0.3)
    assert retry > 0.0
    time.sleep(retry + 0.05)
    assert rate_limiter.hit(key, 2, 0.3) == 0.0


def test_rate_limiter_window_slides(rate_limiter: IRateLimiter) -> None:
    key = unique("client")
    assert rate_limiter.hit(key, 2, 0.5) == 0.0
    time.sleep(0.3)
    assert rate_limiter.hit(key, 2, 0.5) == 0.0
    assert rate_limiter.hit(key, 2, 0.5) > 0.0
    time.sleep(0.3)  # the first hit has left the window, the second has not
    assert rate_limiter.hit(key, 2, 0.5) == 0.0
    assert rate_limiter.hit(key, 2, 0.5) > 0.0


def test_rate_limiter_keys_are_independent(rate_limiter: IRateLimiter) -> None:
    a, b = unique("a"), unique("b")
    assert rate_limiter.hit(a, 1, 1.0) == 0.0
    assert rate_limiter.hit(a, 1, 1.0) > 0.0
    assert rate_limiter.hit(b, 1, 1.0) == 0.0
