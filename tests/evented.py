"""The EVENTED_ENTERPRISE wiring the tests build on real PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any


def evented_config(
    pg: tuple[str, str], redis: tuple[str, str], kafka: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """PostgreSQL schema, Redis prefix, the given broker and topic, hash
    embeddings, fast-core vectors; ``extra`` replaces whole sections."""
    (dsn, schema), (redis_url, prefix) = pg, redis
    config: dict[str, Any] = {
        "postgres": {"url": dsn, "schema": schema},
        "redis": {"url": redis_url, "prefix": prefix},
        "vector": {"backend": "fast"},
        "embeddings": {"model": "hash", "dim": 64},
        "kafka": kafka,
    }
    config.update(extra)
    return config


def no_broker(topic: str = "unused") -> dict[str, Any]:
    """A Kafka section for a process that only writes the outbox: nothing here
    relays it, so the broker address is never dialled."""
    return {"bootstrap_servers": "127.0.0.1:1", "topic": topic}
