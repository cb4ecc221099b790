"""Rate limits: a sliding budget per key (per address without one), 429 with Retry-After."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from somafractalmemory.adapters.redis import RedisRateLimiter
from somafractalmemory.api.app import create_app
from somafractalmemory.api.metrics import ApiMetrics
from somafractalmemory.api.ratelimit import Leases, RateLimit
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


# -- grants: a busy key's budget taken from Redis several requests at a time ----------


class CountingLimiter(RedisRateLimiter):
    """The real Redis limiter, counting its round trips."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(url, prefix=prefix)
        self.calls = 0

    async def take_async(self, key: str, n: int, limit: int, window_seconds: float) -> tuple[int, float]:
        self.calls += 1
        return await super().take_async(key, n, limit, window_seconds)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.redis
def test_two_processes_share_a_busy_budget_in_grants(redis_prefix: tuple[str, str]) -> None:
    """Two API processes' limits on one Redis budget of 1,000: together they let
    through at most 1,000 and at least 1,000 less what each may hold unused
    (a grant is at most 1% of the budget), with far fewer round trips than requests."""
    url, prefix = redis_prefix
    limiters = [CountingLimiter(url, prefix), CountingLimiter(url, prefix)]
    limits = [RateLimit(lim, 1000, 60, ApiMetrics()) for lim in limiters]
    assert all(limit.leases is not None and limit.leases.cap == 10 for limit in limits)

    async def main() -> tuple[int, list[float]]:
        allowed, waits = 0, []
        for i in range(1300):
            try:
                await limits[i % 2].acheck("key:a")
                allowed += 1
            except RateLimited as exc:
                waits.append(exc.retry_after)
        for limiter in limiters:
            await limiter.aclose()
        return allowed, waits

    allowed, waits = asyncio.run(main())
    assert 1000 - 2 * 10 <= allowed <= 1000
    assert len(waits) == 1300 - allowed and all(0 < w <= 61 for w in waits)
    calls = sum(lim.calls for lim in limiters)
    assert calls <= 1000 // 10 + 2 * 10  # grants of 10 once each process is busy; refusals stay local
    raw = redis.Redis.from_url(url)
    assert raw.zcard(prefix + "rl:key:a") == 1000  # every slot counted, used or held
    raw.close()
    for limiter in limiters:
        limiter.close()


@pytest.mark.redis
def test_a_grant_follows_demand_and_is_not_used_after_its_time(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    limiter, clock = CountingLimiter(url, prefix), Clock()
    leases = Leases(limiter, 10_000, 60, clock)  # grants of at most 100, each used for up to 0.6 s
    assert (leases.cap, leases.seconds) == (100, 0.6)
    raw = redis.Redis.from_url(url)

    async def main() -> None:
        for _ in range(1 + 2 + 4 + 8):  # used up at once: each grant twice the last
            assert await leases.hit("k") == 0.0
        assert limiter.calls == 4 and raw.zcard(prefix + "rl:k") == 15
        assert await leases.hit("k") == 0.0  # a grant of 16
        assert (limiter.calls, raw.zcard(prefix + "rl:k")) == (5, 31)
        for _ in range(4):
            assert await leases.hit("k") == 0.0  # from that grant
        clock.now += 0.7  # the grant's time is over: its 11 left are not used
        assert await leases.hit("k") == 0.0
        assert limiter.calls == 6 and raw.zcard(prefix + "rl:k") == 36  # a grant of 5, the demand seen
        clock.now += 0.7
        assert await leases.hit("other") == 0.0  # another key starts at one
        assert raw.zcard(prefix + "rl:other") == 1
        await limiter.aclose()

    asyncio.run(main())
    raw.close()
    limiter.close()


@pytest.mark.redis
def test_a_refused_key_waits_the_time_redis_gave_without_asking_again(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    limiter, clock = CountingLimiter(url, prefix), Clock()
    leases = Leases(limiter, 200, 1.0, clock)

    async def main() -> None:
        spent = 0
        while await leases.hit("k") == 0.0:
            spent += 1
        assert spent == 200
        calls = limiter.calls
        first = await leases.hit("k")
        assert 0 < first <= 1.0 and limiter.calls == calls  # refused here, no round trip
        clock.now += first
        await asyncio.sleep(first + 0.05)  # Redis's own clock must pass it too
        assert await leases.hit("k") == 0.0  # asked again once the wait is over, and a slot has freed
        assert limiter.calls == calls + 1
        await limiter.aclose()

    asyncio.run(main())
    limiter.close()


@pytest.mark.redis
def test_small_budgets_are_counted_one_request_at_a_time(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    limiter = RedisRateLimiter(url, prefix=prefix)
    assert RateLimit(limiter, 199, 60, ApiMetrics()).leases is None  # a grant would be 1
    assert RateLimit(limiter, 200, 60, ApiMetrics()).leases is not None
    limiter.close()


@pytest.mark.redis
def test_requests_of_a_key_granted_at_the_same_time_share_one_grant(redis_prefix: tuple[str, str]) -> None:
    """Concurrent first requests each ask Redis; what their grants hold beyond
    their own request joins one lease, never counting a slot twice."""
    url, prefix = redis_prefix
    limiter = CountingLimiter(url, prefix)
    leases = Leases(limiter, 200, 60)

    async def main() -> int:
        first = await asyncio.gather(*(leases.hit("k") for _ in range(20)))
        assert first == [0.0] * 20 and limiter.calls == 20
        allowed = 20
        while await leases.hit("k") == 0.0:
            allowed += 1
        await limiter.aclose()
        return allowed

    assert asyncio.run(main()) == 200
    limiter.close()


@pytest.mark.redis
def test_the_api_takes_a_large_budget_in_grants_and_still_stops_at_it(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    backends = create_backends("test", {"redis": {"url": url, "prefix": prefix}})
    settings = make_settings(SOMA_RATE_LIMIT_MAX=200, SOMA_RATE_LIMIT_WINDOW=60)
    try:
        with TestClient(create_app(settings, backends)) as client:
            assert client.app.state.soma.ratelimit.leases is not None  # type: ignore[attr-defined]
            statuses = [client.get("/stats").status_code for _ in range(201)]
            assert statuses[:200] == [200] * 200 and statuses[200] == 429
        raw = redis.Redis.from_url(url)
        assert raw.zcard(prefix + "rl:addr:testclient") == 200
        raw.close()
    finally:
        backends.close()
