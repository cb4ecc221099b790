"""``SomaClient`` against an in-process app: typed results and the library's exceptions."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from somafractalmemory.api.schemas import MemoryOut, StatsResponse
from somafractalmemory.client import SomaClient
from somafractalmemory.errors import (
    BackendUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from somafractalmemory.models import MemoryType

from .conftest import AppFactory, soma_client


@pytest.fixture
def soma(client: TestClient) -> Iterator[SomaClient]:
    with soma_client(client) as c:
        yield c


def test_every_method_round_trips(soma: SomaClient) -> None:
    stored = soma.store((1, 2, 3), {"task": "write the client", "importance": 3})
    assert stored.coord == [1.0, 2.0, 3.0] and stored.ok
    soma.store("4,5,6", {"fact": "clients are thin"}, MemoryType.SEMANTIC)
    picked = soma.remember({"text": "remember me"})
    assert len(picked.coord) == 3
    assert (
        soma.store_bulk([((7, 7), {"text": "seven"}), {"coord": [8, 8], "payload": {"text": "eight"}}]) == 2
    )

    memory = soma.get([1, 2, 3])
    assert isinstance(memory, MemoryOut) and memory.type is MemoryType.EPISODIC
    assert soma.retrieve((1, 2, 3)) == {
        **memory.payload,
        "coordinate": [1.0, 2.0, 3.0],
        "memory_type": "episodic",
    }
    assert soma.retrieve((0, 0, 0)) is None

    assert soma.recall("client")[0]["task"] == "write the client"
    assert soma.recall("thin", memory_type="semantic")[0]["fact"] == "clients are thin"
    scored = soma.recall_with_scores("client", weights={"recency": 0.0})
    assert scored[0].coord == [1.0, 2.0, 3.0] and scored[0].parts.recency == pytest.approx(
        scored[0].parts.recency
    )
    assert len(soma.recall_batch(["client", "thin"], top_k=1)) == 2

    assert soma.link((1, 2, 3), (4, 5, 6), "supports", 2.0) is True
    with_context = soma.recall_with_context("thin", {"coordinate": [1, 2, 3]})
    assert with_context[0].parts.graph > 0
    assert [n.coord for n in soma.neighbors((1, 2, 3))] == [[4.0, 5.0, 6.0]]
    assert soma.shortest_path((1, 2, 3), (4, 5, 6)) == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert soma.shortest_path((4, 5, 6), (1, 2, 3)) == []
    assert [m.coord for m in soma.range((7, 7), (8, 8))] == [[7.0, 7.0], [8.0, 8.0]]

    stats = soma.stats()
    assert isinstance(stats, StatsResponse) and stats.total_memories == 5 and stats.links == 1
    assert soma.health().status == "ok"
    assert soma.healthz().status == "ok"
    assert soma.readyz().ready is True
    assert "soma_http_requests_total" in soma.metrics()

    assert [v.action for v in soma.history((1, 2, 3))] == ["created"]
    assert soma.delete((1, 2, 3)) is True
    assert soma.delete((1, 2, 3)) is False


def test_export_and_import(soma: SomaClient, client: TestClient) -> None:
    soma.store((1,), {"text": "one"})
    soma.store((2,), {"text": "two"})
    soma.link((1,), (2,))
    buffer = io.StringIO()
    lines = soma.export(buffer)
    assert lines == 1 + 2 + 2 + 1
    with soma_client(client, namespace="copy") as copy:
        result = copy.import_memories(io.BytesIO(buffer.getvalue().encode()))
        assert (result.memories, result.history, result.links) == (2, 2, 1)
        assert copy.stats().total_memories == 2
        again = copy.import_memories(buffer.getvalue().splitlines(keepends=True))
        assert again.memories == 2
        assert next(iter(copy.export_lines())).startswith('{"kind": "header"')


def test_errors_map_back_to_library_exceptions(soma: SomaClient, make_app: AppFactory) -> None:
    with pytest.raises(InvalidInput) as bad:
        soma.store((1,), ["not", "an", "object"])  # type: ignore[arg-type]
    assert bad.value.field == "payload"
    with pytest.raises(InvalidInput) as bad_k:
        soma.recall("x", top_k=0)
    assert bad_k.value.field == "top_k"
    with pytest.raises(InvalidInput) as bad_coord:  # checked before anything is sent
        soma.get("a,b")
    assert bad_coord.value.field == "coord"
    with pytest.raises(NotFound):
        soma.get((9, 9, 9))
    with pytest.raises(PayloadTooLarge) as too_large:
        soma.store((1,), {"text": "x" * 1_100_000})
    assert too_large.value.field == "payload"
    with pytest.raises(NotFound):
        soma.link((1,), (2,))

    with TestClient(make_app(MEMORY_MODE="evented_enterprise", SOMA_API_KEYS="k=a")) as keyed:
        with soma_client(keyed) as anonymous, pytest.raises(Unauthorized):
            anonymous.stats()
        with soma_client(keyed, api_key="k", namespace="b") as wrong_ns, pytest.raises(Forbidden):
            wrong_ns.stats()
        with soma_client(keyed, api_key="k") as right:
            assert right.stats().namespace == "a"

    not_started = TestClient(make_app())
    with soma_client(not_started) as early:
        with pytest.raises(BackendUnavailable):
            early.stats()
        assert early.readyz().ready is False


def test_unreachable_server_is_backend_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        SomaClient(f"http://127.0.0.1:{port}", timeout=2.0) as soma,
        pytest.raises(BackendUnavailable) as caught,
    ):
        soma.stats()
    assert caught.value.setting == "base_url"
