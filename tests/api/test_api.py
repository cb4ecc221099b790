"""The HTTP API in process: every endpoint's happy path, and every error's mapping."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from somafractalmemory import errors
from somafractalmemory.api import tracing
from somafractalmemory.api.errors import STATUS_BY_ERROR, status_for
from somafractalmemory.models import MAX_PAYLOAD_BYTES

from .conftest import AppFactory

NS = "X-Soma-Namespace"


def store(client: TestClient, coord: Any, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = client.post("/store", json={"coord": coord, "payload": payload, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"] == code
    assert body["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    if field is not None:
        assert body["field"] == field, body
    return body


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    store(client, [1, 2, 3], {"task": "write the api docs", "importance": 5, "tags": ["docs"]})
    store(client, "4,5,6", {"fact": "the sky is blue"}, type="semantic")
    store(client, [7, 8, 9], {"text": "deploy the api server", "importance": 1})
    return client


# -- writes ---------------------------------------------------------------------
def test_store_returns_the_spec_shape_and_canonical_coordinate(client: TestClient) -> None:
    body = store(client, "1, 2, 3", {"task": "x"})
    assert set(body) == {"ok", "coord", "memory_id"}
    assert body["ok"] is True
    assert body["coord"] == [1.0, 2.0, 3.0]
    again = store(client, [1.0, 2.0, 3.0], {"task": "y"})  # same address, text or list
    assert again["memory_id"] == body["memory_id"]
    memory = client.get("/memories/1,2,3").json()
    assert memory["payload"]["task"] == "y"
    assert memory["version"] == 2
    assert memory["type"] == "episodic"


def test_remember_picks_a_coordinate_or_uses_the_given_one(client: TestClient) -> None:
    picked = client.post("/remember", json={"payload": {"task": "remember me"}}).json()
    assert picked["ok"] is True and len(picked["coord"]) == 3
    given = client.post("/remember", json={"payload": {"task": "here"}, "coord": "9,9", "type": "semantic"})
    assert given.json()["coord"] == [9.0, 9.0]
    assert client.get("/memories/9,9").json()["type"] == "semantic"


def test_store_bulk_then_range(client: TestClient) -> None:
    items = [{"coord": [i, i, i], "payload": {"text": f"item {i}"}} for i in range(10)]
    items.append({"coord": "20,20,20", "payload": {"fact": "far"}, "type": "semantic"})
    response = client.post("/store_bulk", json={"items": items})
    assert response.json() == {"stored": 11}
    inside = client.get("/range", params={"min": "2,2,2", "max": "4,4,4"}).json()["memories"]
    assert sorted(m["coord"] for m in inside) == [[2.0, 2.0, 2.0], [3.0, 3.0, 3.0], [4.0, 4.0, 4.0]]
    assert set(inside[0]) == {"coord", "payload", "memory_id", "type", "version", "created_at", "updated_at"}
    assert inside[0]["payload"]["text"].startswith("item ") and inside[0]["version"] == 1
    semantic = client.get("/range", params={"min": "0,0,0", "max": "99,99,99", "type": "semantic"}).json()
    assert [m["coord"] for m in semantic["memories"]] == [[20.0, 20.0, 20.0]]
    limited = client.get("/range", params={"min": "0,0,0", "max": "99,99,99", "limit": 2}).json()
    assert len(limited["memories"]) == 2


def test_bulk_item_errors_name_the_item(client: TestClient) -> None:
    items = [{"coord": [1], "payload": {}}, {"coord": "a,b", "payload": {}}]
    assert_error(client.post("/store_bulk", json={"items": items}), 422, "invalid_input", "items[1].coord")


# -- recall ---------------------------------------------------------------------
def test_recall_returns_payloads_best_first(seeded: TestClient) -> None:
    matches = seeded.post("/recall", json={"query": "api docs"}).json()["matches"]
    assert matches[0]["task"] == "write the api docs"
    assert matches[0]["coordinate"] == [1.0, 2.0, 3.0]
    assert matches[0]["memory_type"] == "episodic"
    only = seeded.post("/recall", json={"query": "api", "top_k": 1}).json()["matches"]
    assert len(only) == 1
    semantic = seeded.post("/recall", json={"query": "sky", "type": "semantic"}).json()["matches"]
    assert [m["fact"] for m in semantic] == ["the sky is blue"]
    filtered = seeded.post("/recall", json={"query": "api", "filters": {"tags": "docs"}}).json()
    assert [m["task"] for m in filtered["matches"]] == ["write the api docs"]
    nothing = seeded.post("/recall", json={"query": "api", "min_score": 1.0}).json()
    assert nothing == {"matches": []}


def test_recall_with_scores_has_parts_and_takes_weights(seeded: TestClient) -> None:
    body = {"query": "api docs", "weights": {"importance": 0.0, "recency": 0.0}}
    results = seeded.post("/recall_with_scores", json=body).json()["results"]
    assert results
    first = results[0]
    assert set(first) == {"coord", "payload", "score", "parts"}
    assert set(first["parts"]) == {"vector", "keyword", "importance", "recency", "graph"}
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    bad = seeded.post("/recall_with_scores", json={"query": "x", "weights": {"bogus": 1}})
    assert_error(bad, 422, "invalid_input", "weights.bogus")
    both_zero = seeded.post(
        "/recall_with_scores", json={"query": "x", "weights": {"vector": 0, "keyword": 0}}
    )
    assert_error(both_zero, 422, "invalid_input", "weights")


def test_recall_with_context_uses_graph_anchors(seeded: TestClient) -> None:
    seeded.post("/link", json={"from_coord": "1,2,3", "to_coord": "7,8,9"}).raise_for_status()
    body = {"query": "deploy", "context": {"coordinate": [1, 2, 3]}, "top_k": 3}
    results = seeded.post("/recall_with_context", json=body).json()["results"]
    deploy = next(r for r in results if r["coord"] == [7.0, 8.0, 9.0])
    assert deploy["parts"]["graph"] > 0
    bad = seeded.post("/recall_with_context", json={"query": "x", "context": {"coordinate": "a"}})
    assert_error(bad, 422, "invalid_input", "context.coordinate")


def test_recall_batch_answers_each_query(seeded: TestClient) -> None:
    body = {"queries": ["api docs", "sky", "nothing like this at all"], "top_k": 2}
    batches = seeded.post("/recall_batch", json=body).json()["batches"]
    assert len(batches) == 3
    assert batches[0][0]["task"] == "write the api docs"
    assert batches[1][0]["fact"] == "the sky is blue"
    assert_error(seeded.post("/recall_batch", json={"queries": []}), 422, "invalid_input", "queries")
    blank = seeded.post("/recall_batch", json={"queries": ["ok", "  "]})
    assert_error(blank, 422, "invalid_input", "queries[1]")


@pytest.mark.parametrize("top_k", [0, -1, 1001, 10001, "five", 2.5, True])
def test_top_k_out_of_range_is_422(client: TestClient, top_k: Any) -> None:
    assert_error(client.post("/recall", json={"query": "x", "top_k": top_k}), 422, "invalid_input", "top_k")


@pytest.mark.parametrize("query", ["", "   ", "q" * 10_001, None, 5])
def test_bad_query_is_422(client: TestClient, query: Any) -> None:
    assert_error(client.post("/recall", json={"query": query}), 422, "invalid_input", "query")


def test_bad_filters_and_type_are_422(client: TestClient) -> None:
    assert_error(client.post("/recall", json={"query": "x", "type": "other"}), 422, "invalid_input", "type")
    bad_op = client.post("/recall", json={"query": "x", "filters": {"n": {"near": 1}}})
    assert_error(bad_op, 422, "invalid_input", "filters.n")
    assert_error(client.post("/recall", json={"query": "x", "filters": [1]}), 422, "invalid_input", "filters")
    assert_error(
        client.post("/recall", json={"query": "x", "min_score": 2}), 422, "invalid_input", "min_score"
    )


# -- graph ----------------------------------------------------------------------
def test_link_neighbors_and_shortest_path(seeded: TestClient) -> None:
    link = seeded.post("/link", json={"from_coord": [1, 2, 3], "to_coord": "4,5,6", "type": "next"})
    assert link.json() == {"ok": True}
    seeded.post("/link", json={"from_coord": "4,5,6", "to_coord": "7,8,9", "weight": 2.5}).raise_for_status()

    out = seeded.get("/neighbors", params={"coord": "1,2,3"}).json()["neighbors"]
    edge = {"type": "next", "weight": 1.0, "from_coord": [1.0, 2.0, 3.0], "to_coord": [4.0, 5.0, 6.0]}
    assert out == [{"coord": [4.0, 5.0, 6.0], **edge, "metadata": {}, "created_at": out[0]["created_at"]}]
    assert out[0]["created_at"] > 0
    into = seeded.get("/neighbors", params={"coord": "4,5,6", "direction": "in"}).json()["neighbors"]
    assert into == [{"coord": [1.0, 2.0, 3.0], **edge, "metadata": {}, "created_at": out[0]["created_at"]}]
    both = seeded.get("/neighbors", params={"coord": "4,5,6", "direction": "both"}).json()["neighbors"]
    assert sorted(n["coord"] for n in both) == [[1.0, 2.0, 3.0], [7.0, 8.0, 9.0]]
    typed = seeded.get("/neighbors", params={"coord": "4,5,6", "direction": "both", "link_type": "next"})
    assert [n["coord"] for n in typed.json()["neighbors"]] == [[1.0, 2.0, 3.0]]
    limited = seeded.get("/neighbors", params={"coord": "4,5,6", "direction": "both", "limit": 1})
    assert len(limited.json()["neighbors"]) == 1

    path = seeded.get("/shortest_path", params={"frm": "1,2,3", "to": "7,8,9"}).json()
    assert path == {"path": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], "found": True}
    back = seeded.get("/shortest_path", params={"frm": "7,8,9", "to": "1,2,3"}).json()
    assert back == {"path": [], "found": False}
    short = seeded.get("/shortest_path", params={"frm": "1,2,3", "to": "7,8,9", "max_depth": 1}).json()
    assert short["found"] is False


def test_graph_errors(seeded: TestClient) -> None:
    missing = seeded.post("/link", json={"from_coord": "1,2,3", "to_coord": "0,0,0"})
    assert_error(missing, 404, "not_found")
    bad_weight = seeded.post("/link", json={"from_coord": "1,2,3", "to_coord": "4,5,6", "weight": 0})
    assert_error(bad_weight, 422, "invalid_input", "weight")
    no_type = seeded.post("/link", json={"from_coord": "1,2,3", "to_coord": "4,5,6", "type": ""})
    assert_error(no_type, 422, "invalid_input", "type")
    direction = seeded.get("/neighbors", params={"coord": "1,2,3", "direction": "up"})
    assert_error(direction, 422, "invalid_input", "direction")
    assert_error(seeded.get("/neighbors", params={"coord": "x"}), 422, "invalid_input", "coord")
    assert_error(seeded.get("/neighbors"), 422, "invalid_input", "coord")
    assert_error(
        seeded.get("/shortest_path", params={"frm": "1,2,3", "to": "nan"}), 422, "invalid_input", "to"
    )


# -- single memories --------------------------------------------------------------
def test_get_delete_and_history(seeded: TestClient) -> None:
    store(seeded, [1, 2, 3], {"task": "write the api docs, v2"})
    memory = seeded.get("/memories/1.0,2.0,3.0").json()
    assert memory["coord"] == [1.0, 2.0, 3.0] and memory["version"] == 2
    assert memory["namespace"] == "default"
    deleted = seeded.delete("/memories/1,2,3").json()
    assert deleted == {"ok": True, "coord": [1.0, 2.0, 3.0], "memory_id": memory["memory_id"]}
    assert_error(seeded.get("/memories/1,2,3"), 404, "not_found")
    assert_error(seeded.delete("/memories/1,2,3"), 404, "not_found")
    history = seeded.get("/memories/1,2,3/history").json()
    assert history["memory_id"] == memory["memory_id"]
    assert [v["action"] for v in history["versions"]] == ["created", "updated", "deleted"]
    assert history["versions"][-1]["payload"] is None
    assert_error(seeded.get("/memories/5,5,5/history"), 404, "not_found")


def test_negative_coordinates_in_paths(client: TestClient) -> None:
    store(client, [-1.5, 0, -0.0], {"text": "negative"})
    assert client.get("/memories/-1.5,0,0").json()["coord"] == [-1.5, 0.0, 0.0]


# -- bad coordinates and payloads ------------------------------------------------------
BAD_COORDS = [
    "a,b",
    "1,,2",
    "",
    [],
    list(range(17)),
    ",".join(["1"] * 17),
    [1, "x"],
    [1, True],
    {"x": 1},
    True,
    None,
    "inf,1",
    "1e400",
    ["1e400"],
]


@pytest.mark.parametrize("coord", BAD_COORDS)
def test_bad_coordinates_are_422_naming_coord(client: TestClient, coord: Any) -> None:
    response = client.post("/store", json={"coord": coord, "payload": {"text": "x"}})
    assert_error(response, 422, "invalid_input", "coord")


def test_nan_coordinate_in_raw_json_is_422(client: TestClient) -> None:
    raw = '{"coord": [NaN, 1], "payload": {"text": "x"}}'
    response = client.post("/store", content=raw, headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_input", "coord")
    raw = '{"coord": [1, 2], "payload": {"v": Infinity}}'
    response = client.post("/store", content=raw, headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_input", "payload.v")


@pytest.mark.parametrize(
    "path", ["/memories/a,b", "/memories/nan", "/memories/1,,2", "/memories/" + "1," * 17]
)
def test_bad_coordinates_in_paths_are_422(client: TestClient, path: str) -> None:
    assert_error(client.get(path), 422, "invalid_input", "coord")


def test_bad_range_bounds_are_422_naming_the_bound(client: TestClient) -> None:
    assert_error(client.get("/range", params={"min": "a", "max": "1"}), 422, "invalid_input", "min")
    assert_error(client.get("/range", params={"min": "1,1", "max": "2"}), 422, "invalid_input", "max")
    assert_error(client.get("/range", params={"min": "3", "max": "2"}), 422, "invalid_input", "min")
    assert_error(client.get("/range", params={"min": "1"}), 422, "invalid_input", "max")


@pytest.mark.parametrize("payload", [[1, 2], "text", 5, None, True])
def test_non_object_payload_is_422(client: TestClient, payload: Any) -> None:
    response = client.post("/store", json={"coord": [1], "payload": payload})
    assert_error(response, 422, "invalid_input", "payload")


def test_reserved_payload_keys_are_checked(client: TestClient) -> None:
    bad = client.post("/store", json={"coord": [1], "payload": {"importance": -1}})
    assert_error(bad, 422, "invalid_input", "payload.importance")
    tags = client.post("/store", json={"coord": [1], "payload": {"tags": "not-a-list"}})
    assert_error(tags, 422, "invalid_input", "payload.tags")
    deep: Any = {}
    cursor = deep
    for _ in range(40):
        cursor["a"] = {}
        cursor = cursor["a"]
    assert client.post("/store", json={"coord": [1], "payload": deep}).status_code == 422


def test_malformed_json_and_missing_fields_are_422(client: TestClient) -> None:
    broken = client.post("/store", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(broken, 422, "invalid_input")
    assert_error(client.post("/store", json={"payload": {}}), 422, "invalid_input", "coord")
    assert_error(client.post("/store", json=[1, 2]), 422, "invalid_input")
    assert_error(client.post("/store"), 422, "invalid_input")


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/store"), 405, "method_not_allowed")


def test_unknown_coordinate_is_404(client: TestClient) -> None:
    body = assert_error(client.get("/memories/1,2,3"), 404, "not_found")
    assert "1,2,3" in body["message"]


# -- size limits ----------------------------------------------------------------------
def test_body_over_the_limit_is_413_by_length(make_app: AppFactory) -> None:
    with TestClient(make_app(SOMA_MAX_BODY_BYTES=1000)) as c:
        response = c.post("/store", json={"coord": [1], "payload": {"text": "x" * 2000}})
        assert_error(response, 413, "payload_too_large", "body")
        assert c.post("/store", json={"coord": [1], "payload": {"text": "small"}}).status_code == 200


def test_streamed_body_over_the_limit_is_413(make_app: AppFactory) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"coord": [1], "payload": {"text": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}}'

    with TestClient(make_app(SOMA_MAX_BODY_BYTES=1000)) as c:
        headers = {"content-type": "application/json"}
        response = c.post("/store", content=chunks(), headers=headers)
        assert_error(response, 413, "payload_too_large", "body")
        imported = c.post("/import", content=chunks(), headers={"content-type": "application/x-ndjson"})
        assert_error(imported, 413, "payload_too_large", "body")
        assert c.get("/stats").json()["total_memories"] == 0


def test_payload_over_the_core_limit_is_413_naming_payload(client: TestClient) -> None:
    big = {"text": "x" * (MAX_PAYLOAD_BYTES + 10)}
    response = client.post("/store", json={"coord": [1], "payload": big})
    assert_error(response, 413, "payload_too_large", "payload")


# -- namespaces without keys ------------------------------------------------------------
def test_namespace_header_isolates_without_keys(client: TestClient) -> None:
    client.post("/store", json={"coord": [1], "payload": {"text": "in a"}}, headers={NS: "a"})
    assert client.get("/stats", headers={NS: "a"}).json()["total_memories"] == 1
    assert client.get("/stats", headers={NS: "b"}).json()["total_memories"] == 0
    assert client.post("/recall", json={"query": "in a"}, headers={NS: "b"}).json() == {"matches": []}
    assert client.get("/stats").json()["namespace"] == "default"
    assert_error(client.get("/stats", headers={NS: "a b"}), 422, "invalid_input", "X-Soma-Namespace")
    assert_error(client.get("/stats", headers={NS: "x" * 129}), 422, "invalid_input", "X-Soma-Namespace")


# -- export / import --------------------------------------------------------------------
def test_export_then_import_into_another_namespace(seeded: TestClient) -> None:
    seeded.post("/link", json={"from_coord": "1,2,3", "to_coord": "4,5,6"}).raise_for_status()
    store(seeded, [1, 2, 3], {"task": "write the api docs", "importance": 6})
    exported = seeded.get("/export")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert lines[0]["kind"] == "header"
    assert {line["kind"] for line in lines} == {"header", "memory", "history", "link"}

    imported = seeded.post(
        "/import", content=exported.content, headers={NS: "copy", "content-type": "application/x-ndjson"}
    )
    assert imported.json() == {"memories": 3, "history": 4, "links": 1}
    original = seeded.get("/stats").json()
    copy = seeded.get("/stats", headers={NS: "copy"}).json()
    for key in ("total_memories", "episodic", "semantic", "links", "vectors"):
        assert copy[key] == original[key], key
    history = seeded.get("/memories/1,2,3/history", headers={NS: "copy"}).json()
    assert [v["version"] for v in history["versions"]] == [1, 2]
    matches = seeded.post("/recall", json={"query": "api docs"}, headers={NS: "copy"}).json()["matches"]
    assert matches[0]["task"] == "write the api docs"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json\n", "line 1"),
        (b'{"kind": "header", "format": "sfm-jsonl", "version": 1}\n{"kind": "alien"}\n', "line 2"),
        (b'{"kind": "memory", "coordinate": "a,b"}\n', "line 1"),
        (b"\xff\xfe\xfa\n", "line 1"),
        (b"[" * 100_000 + b"\n", "line 1"),
    ],
)
def test_bad_import_is_422_naming_the_line(client: TestClient, body: bytes, field: str) -> None:
    response = client.post("/import", content=body, headers={"content-type": "application/x-ndjson"})
    body_json = assert_error(response, 422, "invalid_input")
    assert body_json["field"].startswith(field)
    assert client.get("/stats").json()["total_memories"] == 0


def test_empty_import_imports_nothing(client: TestClient) -> None:
    assert client.post("/import", content=b"").json() == {"memories": 0, "history": 0, "links": 0}


# -- admin and probes ----------------------------------------------------------------------
def test_stats_health_and_probes(seeded: TestClient) -> None:
    stats = seeded.get("/stats").json()
    assert stats["total_memories"] == 3
    assert stats["episodic"] == 2 and stats["semantic"] == 1
    assert {"links", "vectors", "namespace", "mode", "pending_events"} <= set(stats)
    health = seeded.get("/health").json()
    assert health["status"] == "ok" and health["mode"] == "test"
    assert health["backends"]["kv"]["ok"] is True
    assert seeded.get("/healthz").json() == {"status": "ok"}
    ready = seeded.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_not_started_app_is_503_and_not_ready(make_app: AppFactory) -> None:
    client = TestClient(make_app())  # no `with`: the lifespan never ran, nothing is built
    body = assert_error(client.post("/recall", json={"query": "x"}), 503, "backend_unavailable")
    assert body["service"] == "Soma API"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json() == {"ready": False, "backends": {}}
    assert client.get("/healthz").status_code == 200


def test_metrics_count_requests_by_route_template(seeded: TestClient) -> None:
    seeded.get("/memories/1,2,3")
    seeded.get("/memories/0,0,0")
    seeded.post("/recall", json={"query": "api"})
    text = seeded.get("/metrics").text
    assert 'soma_http_requests_total{method="GET",route="/memories/{coord}",status="200"} 1.0' in text
    assert 'soma_http_requests_total{method="GET",route="/memories/{coord}",status="404"} 1.0' in text
    assert 'soma_http_requests_total{method="POST",route="/store",status="200"} 3.0' in text
    assert 'soma_operations_total{operation="recall",outcome="ok"} 1.0' in text
    assert 'soma_operations_total{operation="store",outcome="ok"} 3.0' in text
    assert "soma_http_request_duration_seconds_bucket" in text
    assert 'soma_operation_duration_seconds_count{operation="store"} 3.0' in text
    assert "soma_memories_stored_total 3.0" in text


def test_metrics_are_per_app(make_app: AppFactory) -> None:
    with TestClient(make_app()) as first, TestClient(make_app()) as second:
        first.get("/healthz")
        assert 'route="/healthz"' in first.get("/metrics").text
        assert 'route="/healthz"' not in second.get("/metrics").text


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["x-request-id"] != "bad id with spaces" and len(made.headers["x-request-id"]) == 32
    error = client.get("/memories/0", headers={"X-Request-ID": "trace-1"})
    assert error.json()["request_id"] == "trace-1"


def test_access_log_is_one_json_line_per_request(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="somafractalmemory.api.access")
    client.get("/memories/1,2,3", headers={"X-Request-ID": "log-1"})
    records = [r for r in caplog.records if r.name == "somafractalmemory.api.access"]
    assert len(records) == 1
    record = records[0]
    assert record.__dict__["route"] == "/memories/{coord}"
    assert record.__dict__["status"] == 404
    assert record.__dict__["namespace"] == "default"
    from somafractalmemory.api.logging import JsonFormatter

    from_formatter = json.loads(JsonFormatter().format(record))
    assert from_formatter["request_id"] == "log-1"
    assert from_formatter["status"] == 404 and from_formatter["message"] == "request"


def test_openapi_is_written_at_start(make_app: AppFactory, tmp_path: Path) -> None:
    target = tmp_path / "spec" / "openapi.json"
    with TestClient(make_app(SOMA_OPENAPI_PATH=str(target))):
        pass
    spec = json.loads(target.read_text())
    paths = set(spec["paths"])
    expected = {
        "/store",
        "/remember",
        "/recall",
        "/recall_batch",
        "/store_bulk",
        "/recall_with_scores",
        "/recall_with_context",
        "/link",
        "/range",
        "/neighbors",
        "/shortest_path",
        "/stats",
        "/metrics",
        "/health",
        "/healthz",
        "/readyz",
        "/memories/{coord}",
        "/memories/{coord}/history",
        "/export",
        "/import",
    }
    assert expected <= paths
    assert spec["paths"]["/store"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }


def test_no_openapi_file_when_the_path_is_empty(
    make_app: AppFactory, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    with TestClient(make_app(SOMA_OPENAPI_PATH="")):
        pass
    assert list(tmp_path.iterdir()) == []


def test_every_library_error_has_a_status() -> None:
    expected = {
        errors.InvalidInput: 422,
        errors.PayloadTooLarge: 413,
        errors.NotFound: 404,
        errors.Conflict: 409,
        errors.LockTimeout: 409,
        errors.WriteConflict: 409,
        errors.Unauthorized: 401,
        errors.Forbidden: 403,
        errors.RateLimited: 429,
        errors.BackendUnavailable: 503,
        errors.ConfigurationError: 503,
        errors.MissingDependency: 503,
    }
    for name in errors.__all__:
        cls = getattr(errors, name)
        if cls is errors.SFMError:
            continue
        row = status_for(cls.__new__(cls))
        assert row is not None, name
        assert row[0] == expected[cls], name
    assert len(STATUS_BY_ERROR) == 9


def test_tracing_is_a_no_op_without_opentelemetry(make_app: AppFactory, monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)  # as if not installed
    assert tracing.load_tracing().enabled is False
    app = make_app()
    used = [m.kwargs["tracing"] for m in app.user_middleware if "tracing" in m.kwargs]
    assert len(used) == 1 and used[0].enabled is False
    with TestClient(app) as c:
        assert store(c, [1], {"text": "traced?"})["ok"] is True


def test_tracing_spans_with_opentelemetry_api(client: TestClient) -> None:
    pytest.importorskip("opentelemetry.trace")
    assert tracing.load_tracing().enabled is True
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = client.get("/memories/1", headers={"traceparent": traceparent})
    assert response.status_code == 404


def test_body_that_is_not_utf8_is_422(client: TestClient) -> None:
    response = client.post("/store", content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_input", "body")


def test_every_endpoint_is_documented(client: TestClient) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "API.md").read_text(encoding="utf-8")
    spec = client.get("/openapi.json").json()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method in operations
        if f"`{method.upper()} {path}`" not in text
    ]
    assert not missing, f"endpoints missing from docs/API.md: {missing}"
    for setting in (
        "SOMA_API_KEYS",
        "SOMA_API_KEYS_FILE",
        "SOMA_RATE_LIMIT_MAX",
        "SOMA_RATE_LIMIT_WINDOW",
        "SOMA_MAX_BODY_BYTES",
        "SOMA_OPENAPI_PATH",
        "UVICORN_WORKERS",
        "UVICORN_TIMEOUT_GRACEFUL",
    ):
        assert setting in text, setting
