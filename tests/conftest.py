"""Shared fixtures: real services (PostgreSQL, Redis) with per-test isolation.

Set ``SOMA_REQUIRE_SERVICES=1`` (the test script does) to turn "service not
reachable" into an error instead of a skip.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("SOMA_FORCE_HASH_EMBEDDINGS", "1")

POSTGRES_URL = os.environ.get("SOMA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SOMA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _need(service: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{service} is not reachable on {host}:{port}"
    if os.environ.get("SOMA_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """``(dsn, schema)``: a fresh, empty PostgreSQL schema, dropped afterwards."""
    _need("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield POSTGRES_URL, schema
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """``(url, prefix)``: a unique key prefix on the test Redis; keys removed afterwards."""
    _need("Redis", "127.0.0.1", 6379)
    import redis

    prefix = f"t:{uuid.uuid4().hex[:12]}:"
    yield REDIS_URL, prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def namespace() -> str:
    return f"ns_{uuid.uuid4().hex[:8]}"
