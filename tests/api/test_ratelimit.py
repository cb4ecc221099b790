"""Rate limits: a sliding budget per key (per address without one), 429 with Retry-After."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from somafractalmemory.api.app import create_app
from somafractalmemory.errors import ConfigurationError, RateLimited
from somafractalmemory.factory import create_backends

from .conftest import AppFactory, make_settings, soma_client

BUDGET = 5
WINDOW = 1.0


@pytest.fixture
def limited(make_app: AppFactory) -> Iterator[TestClient]:
    app = make_app(SOMA_RATE_LIMIT_MAX=BUDGET, SOMA_RATE_LIMIT_WINDOW=WINDOW)
    with TestClient(app) as c:
        yield c


def test_over_budget_is_429_with_retry_after_then_served_again(limited: TestClient) -> None:
    for _ in range(BUDGET):
        assert limited.get("/stats").status_code == 200
    refused = limited.get("/stats")
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= WINDOW + 1
    # every kind of request spends the same budget, even a refused one is not counted
    assert limited.post("/recall", json={"query": "x"}).status_code == 429
    time.sleep(WINDOW + 0.1)  # the window slides past the five counted requests
    assert limited.get("/stats").status_code == 200
    text = limited.get("/metrics").text
    assert "soma_rate_limited_total 2.0" in text


def test_probes_are_not_limited(limited: TestClient) -> None:
    for _ in range(BUDGET * 3):
        assert limited.get("/healthz").status_code == 200
        assert limited.get("/readyz").status_code == 200
        assert limited.get("/metrics").status_code == 200
    assert limited.get("/stats").status_code == 200


def test_budgets_are_per_key(make_app: AppFactory) -> None:
    app = make_app(
        SOMA_RATE_LIMIT_MAX=BUDGET,
        SOMA_RATE_LIMIT_WINDOW=60,
        MEMORY_MODE="evented_enterprise",
        SOMA_API_KEYS="key-a=a,key-b=b",
    )
    with TestClient(app) as c:
        a = {"Authorization": "Bearer key-a"}
        b = {"Authorization": "Bearer key-b"}
        for _ in range(BUDGET):
            assert c.get("/stats", headers=a).status_code == 200
        assert c.get("/stats", headers=a).status_code == 429
        assert c.get("/stats", headers=b).status_code == 200


def test_wrong_keys_spend_the_address_budget(make_app: AppFactory) -> None:
    app = make_app(
        SOMA_RATE_LIMIT_MAX=BUDGET,
        SOMA_RATE_LIMIT_WINDOW=60,
        MEMORY_MODE="evented_enterprise",
        SOMA_API_KEYS="key-a=a",
    )
    with TestClient(app) as c:
        for i in range(BUDGET):
            assert c.get("/stats", headers={"Authorization": f"Bearer guess-{i}"}).status_code == 401
        assert c.get("/stats", headers={"Authorization": "Bearer guess-x"}).status_code == 429
        # the real key has its own budget
        assert c.get("/stats", headers={"Authorization": "Bearer key-a"}).status_code == 200


def test_zero_turns_the_limit_off(client: TestClient) -> None:
    for _ in range(50):
        assert client.get("/stats").status_code == 200


def test_the_client_raises_rate_limited_with_retry_after(limited: TestClient) -> None:
    with soma_client(limited) as soma:
        for _ in range(BUDGET):
            soma.stats()
        with pytest.raises(RateLimited) as caught:
            soma.stats()
    assert 1.0 <= caught.value.retry_after <= WINDOW + 1


@pytest.mark.redis
def test_the_budget_is_shared_through_redis(redis_prefix: tuple[str, str]) -> None:
    """Two API processes (two apps over their own backends) share one budget in Redis."""
    url, prefix = redis_prefix
    config = {"redis": {"url": url, "prefix": prefix}}
    first_backends = create_backends("test", config)
    second_backends = create_backends("test", config)
    assert first_backends.rate_limiter.name == "redis"
    assert getattr(first_backends.rate_limiter, "asynchronous", False)  # checked on the event loop
    settings = make_settings(SOMA_RATE_LIMIT_MAX=BUDGET, SOMA_RATE_LIMIT_WINDOW=60)
    try:
        with (
            TestClient(create_app(settings, first_backends)) as first,
            TestClient(create_app(settings, second_backends)) as second,
        ):
            for i in range(BUDGET):
                assert (first if i % 2 else second).get("/stats").status_code == 200
            assert first.get("/stats").status_code == 429
            assert second.get("/stats").status_code == 429
    finally:
        first_backends.close()
        second_backends.close()


def test_a_window_of_zero_seconds_is_refused(make_app: AppFactory) -> None:
    with (
        pytest.raises(ConfigurationError, match="SOMA_RATE_LIMIT_WINDOW"),
        TestClient(make_app(SOMA_RATE_LIMIT_MAX=5, SOMA_RATE_LIMIT_WINDOW=0)),
    ):
        pass
