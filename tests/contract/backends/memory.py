"""In-process adapters for the contract tests."""

from __future__ import annotations

from typing import Any

import pytest

from somafractalmemory.adapters.memory import (
    InMemoryCache,
    InMemoryGraphStore,
    InMemoryKeyValueStore,
    InMemoryKeywordIndex,
    InMemoryLockManager,
    InMemoryRateLimiter,
)


def _factory(cls: type) -> Any:
    def make(request: pytest.FixtureRequest) -> Any:
        return cls()

    return make


FACTORIES = {
    "kv": {"memory": _factory(InMemoryKeyValueStore)},
    "graph": {"memory": _factory(InMemoryGraphStore)},
    "keyword": {"memory": _factory(InMemoryKeywordIndex)},
    "cache": {"memory": _factory(InMemoryCache)},
    "locks": {"memory": _factory(InMemoryLockManager)},
    "ratelimit": {"memory": _factory(InMemoryRateLimiter)},
}
