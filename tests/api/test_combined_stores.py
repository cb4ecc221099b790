"""Concurrent ``POST /store`` over PostgreSQL and Redis: combined into batches
(``api.combiner``), every store kept as its own version, exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from somafractalmemory.api.app import create_app
from somafractalmemory.factory import create_backends
from somafractalmemory.services.backends import Backends

from ..evented import evented_config, no_broker
from .conftest import make_settings

SAME = [7.0, 7.0]  # stored again and again by concurrent requests
N_DISTINCT, N_SAME = 60, 20


@pytest.fixture
def network_backends(pg_schema: tuple[str, str], redis_prefix: tuple[str, str]) -> Iterator[Backends]:
    # the API only writes the outbox; nothing here publishes
    config = evented_config(pg_schema, redis_prefix, no_broker(f"memory.events.{pg_schema[1]}"))
    backends = create_backends("evented_enterprise", config)
    yield backends
    backends.close()


def store_concurrently(client: TestClient) -> list[int]:
    bodies = [{"coord": [float(i), 1.0], "payload": {"text": f"memory {i}"}} for i in range(N_DISTINCT)]
    bodies += [{"coord": SAME, "payload": {"text": f"revision {j}"}} for j in range(N_SAME)]
    with ThreadPoolExecutor(16) as pool:  # TestClient serves them concurrently on its event loop
        return list(pool.map(lambda body: client.post("/store", json=body).status_code, bodies))


def rows(dsn: str, schema: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True, options=f"-csearch_path={schema}") as conn:
        return conn.execute(sql.encode()).fetchall()


def batch_sizes(client: TestClient) -> tuple[float, float]:
    """(batches written, stores in them) from the API's metrics."""
    text = client.get("/metrics").text
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("soma_api_store_batch_size_")
    }
    return values.get("soma_api_store_batch_size_count", 0.0), values.get(
        "soma_api_store_batch_size_sum", 0.0
    )


@pytest.mark.parametrize("writers", [2, 1, 0])
def test_concurrent_stores_each_become_one_version(
    network_backends: Backends, pg_schema: tuple[str, str], writers: int
) -> None:
    dsn, schema = pg_schema
    settings = make_settings(
        MEMORY_MODE="evented_enterprise", SOMA_API_KEYS="secret=agents", SOMA_API_STORE_WRITERS=writers
    )
    auth = {"Authorization": "Bearer secret"}
    with TestClient(create_app(settings, network_backends), headers=auth) as client:
        assert store_concurrently(client) == [200] * (N_DISTINCT + N_SAME)
        batches, combined = batch_sizes(client)
        same = client.get("/memories/7,7").json()

    # 0 turns combining off; else every store went through it (batches of any size)
    assert combined == (0 if writers == 0 else N_DISTINCT + N_SAME)
    assert (batches == 0) if writers == 0 else (1 <= batches <= combined)
    memories = rows(dsn, schema, "SELECT count(*) FROM memories")
    assert memories == [(N_DISTINCT + 1,)]
    # the memory stored 20 times: versions 1..20, each once, in history and in the outbox
    assert same["version"] == N_SAME
    history = rows(dsn, schema, "SELECT version FROM memory_history WHERE coordinate = '{7,7}' ORDER BY 1")
    assert [v for (v,) in history] == list(range(1, N_SAME + 1))
    events = rows(dsn, schema, "SELECT count(*), count(DISTINCT event->>'event_id') FROM outbox")
    assert events == [(N_DISTINCT + N_SAME, N_DISTINCT + N_SAME)]
