"""The API's short paths answer exactly as FastAPI's general ones do.

``fastroute.CoreRoute`` serves a well-formed JSON-body request without
FastAPI's dependency machinery, and ``deps.run`` calls the core on the event
loop when every backend is in process. The parity test sends the same
requests, valid and not, to two apps over like backends: one on the short
path, one forced onto FastAPI's own (``CoreRoute.enabled = False``), and
compares every answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from somafractalmemory.api import app as app_module
from somafractalmemory.api import deps
from somafractalmemory.api.deps import INLINE_OPERATIONS, in_process, run
from somafractalmemory.api.fastroute import CoreRoute, _plan
from somafractalmemory.api.metrics import ApiMetrics
from somafractalmemory.factory import create_backends

from .conftest import make_settings

KEYS = "k-a=a,k-b=b:ro,k-all=*"
LONG_NS = "n" * 129

Case = tuple[str, str, dict[str, Any]]
JSON = "application/json"


def post(
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    ctype: str | None = None,
    key: str | None = None,
    auth: str | None = None,
    ns: str | None = None,
) -> Case:
    """A POST: ``body`` as JSON, or ``raw`` bytes with content type ``ctype`` (none if None)."""
    headers: dict[str, str] = {}
    if ctype is not None:
        headers["content-type"] = ctype
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if auth is not None:
        headers["Authorization"] = auth
    if ns is not None:
        headers["X-Soma-Namespace"] = ns
    kwargs: dict[str, Any] = {"content": raw} if raw is not None else {"json": body}
    return "POST", path, {**kwargs, "headers": headers}


def item(coord: Any, text: str) -> dict[str, Any]:
    return {"coord": coord, "payload": {"text": text}}


#: sent in this order to both apps
CASES: list[Case] = [
    # writes, good and bad
    post("/store", item([1, 2, 3], "alpha beta")),
    post("/store", {**item("4,5,6", "gamma"), "type": "semantic"}),
    post("/store", item([1, "x"], "bad coord")),
    post("/store", {"coord": [1, 2], "payload": ["not", "an", "object"]}),
    post("/store", {"coord": [1, 2]}),
    post("/store", {**item([1, 2], "t"), "type": "nope"}),
    post("/store", [1, 2, 3]),
    post("/store", raw=b"{not json", ctype=JSON),
    post("/store", raw=b"\xff\xfe{", ctype=JSON),
    post("/store", raw=b"", ctype=JSON),
    post("/store", raw=b'{"coord": [1], "payload": {}}', ctype="text/plain"),
    post("/store", raw=b'{"coord": [1], "payload": {}}'),
    post(
        "/store",
        raw=b'{"coord": [9], "payload": {"text": "charset"}}',
        ctype="Application/JSON; charset=utf-8",
    ),
    post("/store", raw=b'{"coord": [10], "payload": {"text": "+json"}}', ctype="application/vnd.soma+json"),
    post("/store", raw=b'{"coord": [NaN], "payload": {}}', ctype=JSON),
    post("/remember", {"payload": {"text": "remember me"}}),
    post("/store_bulk", {"items": [item([i, 0], f"bulk {i}") for i in range(3)]}),
    post("/store_bulk", {"items": [{"coord": [0, 0], "payload": {}}, {"coord": "x"}]}),
    post("/link", {"from_coord": [1, 2, 3], "to_coord": "4,5,6", "weight": 2}),
    post("/link", {"from_coord": [1, 2, 3], "to_coord": [4, 5, 6], "weight": 0}),
    # reads, good and bad
    post("/recall", {"query": "alpha", "top_k": 3}),
    post("/recall", {"query": "alpha", "filters": {"text": "alpha beta"}, "min_score": 0.0}),
    post("/recall", {"query": "", "top_k": 3}),
    post("/recall", {"query": "alpha", "top_k": "3"}),
    post("/recall", {"query": "alpha", "top_k": True}),
    post("/recall", {"query": "alpha", "top_k": 0}),
    post("/recall", {"query": "alpha", "filters": {"a": {"bogus": 1}}}),
    post("/recall", {"query": "alpha", "context": {"coordinate": [1, 2, 3]}}),
    post("/recall_with_scores", {"query": "gamma", "weights": {"keyword": 2.0}}),
    post("/recall_with_scores", {"query": "gamma", "weights": {"unknown": 1}}),
    post("/recall_with_context", {"query": "gamma", "context": {"coordinate": "1,2,3"}}),
    post("/recall_batch", {"queries": ["alpha", "gamma"], "top_k": 2}),
    post("/recall_batch", {"queries": []}),
    # namespaces
    post("/recall", {"query": "alpha"}, ns=LONG_NS),
    post("/recall", {"query": "alpha"}, ns="other"),
    post("/store", item([1], "x"), ns="bad ns!"),
]
#: with keys configured (and a small rate limit): who may do what
KEYED: list[Case] = [
    post("/recall", {"query": "alpha"}),
    post("/recall", {"query": "alpha"}, key="wrong"),
    post("/recall", {"query": "alpha"}, auth="Basic k-a"),
    post("/store", item([1], "in a"), key="k-a"),
    post("/store", item([1], "in b"), key="k-b"),
    post("/recall", {"query": "in a"}, key="k-b", ns="a"),
    post("/recall", {"query": "in a"}, key="k-all", ns="a"),
    post("/recall", {"query": ""}, key="wrong"),
    post("/recall", {"query": "x"}, key="k-a", ns=LONG_NS),
    post("/recall", {"query": "x"}, key="k-a"),
    post("/recall", {"query": "x"}, key="k-a"),
]


_CLOCK = frozenset({"request_id", "timestamp", "created_at", "updated_at", "changed_at"})


def _timeless(value: Any) -> Any:
    """``value`` without what differs between two runs: ids of requests, clock times."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k not in _CLOCK}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)  # recency moves with the clock
    if isinstance(value, str) and value.startswith("rate limit exceeded"):
        return "rate limit exceeded"  # "retry after 3599.9s"
    return value


def _comparable(response: Any) -> tuple[int, Any, dict[str, str]]:
    try:
        body = _timeless(response.json())
    except ValueError:
        body = response.text
    headers = {
        name: response.headers[name]
        for name in ("content-type", "retry-after", "www-authenticate")
        if name in response.headers
    }
    return response.status_code, body, headers


def _answers(
    monkeypatch: pytest.MonkeyPatch, cases: list[Case], standard: bool, **settings: Any
) -> list[tuple[int, Any, dict[str, str]]]:
    import fastapi.routing

    solved: list[str] = []
    original = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    backends = create_backends("test")
    try:
        with monkeypatch.context() as patch:
            patch.setattr(CoreRoute, "enabled", not standard)
            patch.setattr(fastapi.routing, "solve_dependencies", counting)
            with TestClient(app_module.create_app(make_settings(**settings), backends)) as client:
                answers = [_comparable(client.request(m, path, **kwargs)) for m, path, kwargs in cases]
    finally:
        backends.close()
    ok = len([a for a in answers if a[0] == 200])
    if standard:  # FastAPI's handler solved (at least) every request that succeeded
        assert len(solved) >= ok > 0
    else:  # only some that failed went to FastAPI's handler
        assert len(solved) <= len(answers) - ok
    return answers


def test_short_path_answers_exactly_like_fastapi(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _answers(monkeypatch, CASES, standard=False)
    slow = _answers(monkeypatch, CASES, standard=True)
    for case, a, b in zip(CASES, fast, slow, strict=True):
        assert a == b, case
    statuses = {status for status, _, _ in fast}
    assert {200, 422}.issubset(statuses)


def test_short_path_answers_exactly_like_fastapi_with_keys_and_a_rate_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = {"SOMA_API_KEYS": KEYS, "SOMA_RATE_LIMIT_MAX": 3, "SOMA_RATE_LIMIT_WINDOW": 3600}
    fast = _answers(monkeypatch, KEYED, standard=False, **settings)
    slow = _answers(monkeypatch, KEYED, standard=True, **settings)
    for case, a, b in zip(KEYED, fast, slow, strict=True):
        assert a == b, case
    assert {200, 401, 403, 422, 429}.issubset({status for status, _, _ in fast})


def _routes() -> dict[tuple[str, str], APIRoute]:
    app = app_module.create_app(make_settings())
    return {
        (method, route.path): route
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }


def test_json_body_routes_take_the_short_path_and_others_do_not() -> None:
    routes = _routes()
    short = {
        ("POST", "/store"),
        ("POST", "/remember"),
        ("POST", "/store_bulk"),
        ("POST", "/recall"),
        ("POST", "/recall_with_scores"),
        ("POST", "/recall_with_context"),
        ("POST", "/recall_batch"),
        ("POST", "/link"),
    }
    for key, route in routes.items():
        assert (_plan(route) is not None) == (key in short), key
    assert all(isinstance(routes[key], CoreRoute) for key in short)


def test_short_path_skips_fastapis_dependency_solving(monkeypatch: pytest.MonkeyPatch) -> None:
    import fastapi.routing

    solved: list[str] = []
    original = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    backends = create_backends("test")
    try:
        with TestClient(app_module.create_app(make_settings(), backends)) as client:
            assert client.post("/store", json={"coord": [1], "payload": {"text": "a"}}).status_code == 200
            assert client.post("/recall", json={"query": "a"}).status_code == 200
            assert solved == []
            assert client.post("/recall", json={"query": ""}).status_code == 422  # FastAPI reports it
            assert client.get("/memories/1").status_code == 200
            assert solved == ["/recall", "/memories/1"]
    finally:
        backends.close()


# -- where the core runs ---------------------------------------------------------------
def _state(inline: bool, threads: int = 0) -> Any:
    return SimpleNamespace(inline=inline, threads=threads, metrics=ApiMetrics(), backends=None)


def _where(state: Any, operation: str) -> bool:
    """Whether ``run`` called the core on the event loop's own thread."""

    async def main() -> bool:
        loop_thread = threading.get_ident()
        ran_in = await run(state, operation, threading.get_ident)
        return ran_in == loop_thread

    return asyncio.run(main())


def test_bounded_operations_run_on_the_loop_only_with_in_process_backends() -> None:
    assert "recall" in INLINE_OPERATIONS and "store" in INLINE_OPERATIONS
    assert _where(_state(inline=True), "recall") is True
    assert _where(_state(inline=True), "store") is True
    assert _where(_state(inline=False), "recall") is False  # network backends
    assert _where(_state(inline=True), "store_bulk") is False  # bulk work: a thread
    assert _where(_state(inline=True), "import") is False


def test_while_core_work_runs_in_a_thread_every_call_uses_one() -> None:
    assert _where(_state(inline=True, threads=1), "recall") is False


def test_operations_are_timed_and_counted_either_way() -> None:
    state = _state(inline=True)
    _where(state, "recall")
    _where(state, "store_bulk")
    text = state.metrics.render().decode()
    assert 'soma_operations_total{operation="recall",outcome="ok"} 1.0' in text
    assert 'soma_operations_total{operation="store_bulk",outcome="ok"} 1.0' in text

    async def failing() -> None:
        def boom() -> None:
            raise RuntimeError("boom")

        await run(state, "recall", boom)

    with pytest.raises(RuntimeError):
        asyncio.run(failing())
    assert 'soma_operations_total{operation="recall",outcome="error"} 1.0' in state.metrics.render().decode()


def test_in_process_backends() -> None:
    test = create_backends("test")
    try:
        assert in_process(test) is True
    finally:
        test.close()

    def named(name: str) -> Any:
        return SimpleNamespace(name=name)

    local = {
        port: named(name)
        for port, name in (
            ("kv", "sqlite"),
            ("graph", "sqlite"),
            ("vectors", "fast"),
            ("keywords", "memory"),
            ("cache", "memory"),
            ("locks", "memory"),
            ("rate_limiter", "memory"),
            ("bus", "null"),
            ("embeddings", "sqlite"),
        )
    }
    assert in_process(SimpleNamespace(**local)) is True  # type: ignore[arg-type]
    for port, remote in (("kv", "postgres"), ("cache", "redis"), ("vectors", "qdrant"), ("bus", "outbox")):
        assert in_process(SimpleNamespace(**{**local, port: named(remote)})) is False  # type: ignore[arg-type]


# -- the background follower -----------------------------------------------------------
class _Follower:
    """Another process's writes waiting to be applied: ``backlog`` changes."""

    interval = 0.0

    def __init__(self, fail: int = 0, backlog: int = 10**9) -> None:
        self.calls: list[tuple[int, int | None]] = []  # (thread, limit)
        self.forced: list[bool] = []
        self.checks: list[int] = []
        self.fail = fail
        self.backlog = backlog

    def behind(self) -> bool:
        self.checks.append(threading.get_ident())
        return self.backlog > 0

    def sync(self, force: bool = False, limit: int | None = None) -> None:
        self.calls.append((threading.get_ident(), limit))
        self.forced.append(force)
        if len(self.calls) <= self.fail:
            raise RuntimeError("database is locked")
        self.backlog = 0 if limit is None else max(0, self.backlog - limit)


def _follow_until(follower: _Follower, calls: int, timeout: float = 10.0, checks: int = 0) -> Any:
    """Run ``app.follow`` until the follower was called ``calls`` times (and
    asked ``checks`` times whether it is behind)."""
    state = _state(inline=True)

    async def main() -> None:
        task = asyncio.create_task(app_module.follow(state, follower))  # type: ignore[arg-type]
        deadline = asyncio.get_running_loop().time() + timeout
        while (len(follower.calls) < calls or len(follower.checks) < checks) and (
            asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    return state


def test_a_small_backlog_is_applied_on_the_loop_in_bounded_steps() -> None:
    step = app_module.INLINE_CHANGES
    follower = _Follower(backlog=3 * step - 5)
    state = _follow_until(follower, 0, checks=10)
    assert follower.backlog == 0
    assert follower.calls == [(threading.get_ident(), step)] * 3  # on the loop, requests served between
    assert state.threads == 0


def test_a_large_backlog_is_applied_in_a_thread_after_the_loop_did_its_share() -> None:
    steps, step = app_module.INLINE_STEPS, app_module.INLINE_CHANGES
    follower = _Follower(backlog=10 * steps * step)
    state = _follow_until(follower, steps + 1)
    loop = threading.get_ident()
    assert follower.calls[:steps] == [(loop, step)] * steps
    assert follower.calls[steps][0] != loop and follower.calls[steps][1] is None  # the rest, in a thread
    assert all(follower.forced[: steps + 1])  # each step ran: none waited for the next due check
    assert follower.backlog == 0 and state.threads == 0


def test_the_background_follower_checks_on_the_loop_and_starts_no_thread_when_up_to_date() -> None:
    follower = _Follower(backlog=0)
    state = _follow_until(follower, 0, checks=5)
    assert len(follower.checks) >= 5
    assert set(follower.checks) == {threading.get_ident()}  # the check: one read, on the loop
    assert follower.calls == []
    assert state.threads == 0


def test_background_failures_are_logged_once_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    follower = _Follower(fail=3)
    with caplog.at_level("WARNING", logger="somafractalmemory.api"):
        _follow_until(follower, 5)
    assert len(follower.calls) >= 5
    warnings = [r for r in caplog.records if "other processes' writes" in r.getMessage()]
    assert len(warnings) == 1


@pytest.fixture
def dev_app(tmp_path: Any) -> Iterator[TestClient]:
    settings = make_settings(MEMORY_MODE="development", SOMA_DATA_DIR=str(tmp_path))
    with TestClient(app_module.create_app(settings)) as client:
        yield client


def test_a_development_app_runs_bounded_calls_on_the_loop(dev_app: TestClient) -> None:
    state: deps.ApiState = dev_app.app.state.soma  # type: ignore[attr-defined]
    assert state.inline is True
    assert state.backends.follower is not None
    assert dev_app.post("/store", json={"coord": [1], "payload": {"text": "hello"}}).status_code == 200
    assert dev_app.post("/recall", json={"query": "hello"}).json()["matches"][0]["text"] == "hello"


def test_a_server_app_freezes_what_it_built_at_startup(tmp_path: Any) -> None:
    import gc

    gc.unfreeze()
    try:
        settings = make_settings(MEMORY_MODE="development", SOMA_DATA_DIR=str(tmp_path))
        with TestClient(app_module.create_app(settings)) as client:
            state: deps.ApiState = client.app.state.soma  # type: ignore[attr-defined]
            assert gc.get_freeze_count() > 0
            assert not any(o is state.backends for o in gc.get_objects())
    finally:
        gc.unfreeze()
