"""Redis adapters for the contract tests, each under a unique key prefix.

Also the cached canonical store: the in-process store behind a Redis cache,
so the ``kv`` contract proves the cache layer changes no answer.
"""

from __future__ import annotations

from typing import Any

import pytest


def _prefix(request: pytest.FixtureRequest) -> tuple[str, str]:
    url, prefix = request.getfixturevalue("redis_prefix")
    return str(url), str(prefix)


def _cache(request: pytest.FixtureRequest) -> Any:
    from somafractalmemory.adapters.redis import RedisCache

    url, prefix = _prefix(request)
    return RedisCache(url, prefix=prefix)


def _locks(request: pytest.FixtureRequest) -> Any:
    from somafractalmemory.adapters.redis import RedisLockManager

    url, prefix = _prefix(request)
    return RedisLockManager(url, prefix=prefix)


def _ratelimit(request: pytest.FixtureRequest) -> Any:
    from somafractalmemory.adapters.redis import RedisRateLimiter

    url, prefix = _prefix(request)
    return RedisRateLimiter(url, prefix=prefix)


def _hybrid_memory_redis(request: pytest.FixtureRequest) -> Any:
    from somafractalmemory.adapters.hybrid import CachedKeyValueStore
    from somafractalmemory.adapters.memory.kv import InMemoryKeyValueStore

    return CachedKeyValueStore(InMemoryKeyValueStore(), _cache(request))


FACTORIES = {
    "cache": {"redis": _cache},
    "locks": {"redis": _locks},
    "ratelimit": {"redis": _ratelimit},
    "kv": {"hybrid_memory_redis": _hybrid_memory_redis},
}
