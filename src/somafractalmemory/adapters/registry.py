"""One row per adapter: where it lives and which extra installs its driver.

Adapters are imported lazily, so a missing optional dependency only matters
when that adapter is chosen, and then the error names the extra.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from ..errors import ConfigurationError, MissingDependency

__all__ = ["ADAPTERS", "load"]


class Row(NamedTuple):
    module: str
    attribute: str
    extra: str | None
    package: str | None


ADAPTERS: dict[tuple[str, str], Row] = {
    ("kv", "memory"): Row("adapters.memory.kv", "InMemoryKeyValueStore", None, None),
    ("kv", "sqlite"): Row("adapters.sqlite.store", "SQLiteStore", None, None),
    ("kv", "postgres"): Row("adapters.postgres.store", "PostgresStore", "postgres", "psycopg"),
    ("kv", "cached"): Row("adapters.hybrid", "CachedKeyValueStore", None, None),
    ("graph", "memory"): Row("adapters.memory.graph", "InMemoryGraphStore", None, None),
    ("keyword", "memory"): Row("adapters.memory.keyword", "InMemoryKeywordIndex", None, None),
    ("keyword", "sqlite"): Row("adapters.sqlite.keyword", "SQLiteKeywordIndex", None, None),
    ("keyword", "postgres"): Row("adapters.postgres.keyword", "PostgresKeywordIndex", "postgres", "psycopg"),
    ("embeddings", "sqlite"): Row("adapters.sqlite.embeddings", "SQLiteEmbeddingStore", None, None),
    ("vector", "memory"): Row("adapters.memory.vectors", "InMemoryVectorStore", None, None),
    ("vector", "fast"): Row("fastcore.store", "FastCoreVectorStore", None, None),
    ("vector", "qdrant"): Row("adapters.qdrant.store", "QdrantVectorStore", "qdrant", "qdrant-client"),
    ("cache", "memory"): Row("adapters.memory.cache", "InMemoryCache", None, None),
    ("cache", "redis"): Row("adapters.redis.cache", "RedisCache", "redis", "redis"),
    ("locks", "memory"): Row("adapters.memory.cache", "InMemoryLockManager", None, None),
    ("locks", "redis"): Row("adapters.redis.locks", "RedisLockManager", "redis", "redis"),
    ("ratelimit", "memory"): Row("adapters.memory.cache", "InMemoryRateLimiter", None, None),
    ("ratelimit", "redis"): Row("adapters.redis.ratelimit", "RedisRateLimiter", "redis", "redis"),
    ("events", "null"): Row("adapters.memory.bus", "NullEventBus", None, None),
    ("events", "memory"): Row("adapters.memory.bus", "InProcessEventBus", None, None),
    ("events", "outbox"): Row("adapters.postgres.outbox", "PostgresOutbox", "postgres", "psycopg"),
    ("producer", "kafka"): Row("adapters.kafka.producer", "KafkaEventProducer", "kafka", "confluent-kafka"),
    ("consumer", "kafka"): Row("adapters.kafka.consumer", "KafkaEventConsumer", "kafka", "confluent-kafka"),
    ("admin", "kafka"): Row("adapters.kafka.admin", "KafkaAdmin", "kafka", "confluent-kafka"),
}


def load(port: str, name: str) -> Any:
    """The adapter class registered for ``(port, name)``."""
    row = ADAPTERS.get((port, name))
    if row is None:
        known = sorted(n for p, n in ADAPTERS if p == port)
        raise ConfigurationError(f"unknown {port} backend {name!r}; known: {', '.join(known)}")
    try:
        module = importlib.import_module(f"somafractalmemory.{row.module}")
    except ImportError as exc:
        if row.extra and row.package:
            raise MissingDependency(row.package, row.extra) from exc
        raise
    return getattr(module, row.attribute)
