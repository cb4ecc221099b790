"""API keys: required in the evented mode, bound to namespaces, compared in constant time."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from somafractalmemory.api import auth
from somafractalmemory.api.auth import KeyRing, parse_key_file, parse_key_spec
from somafractalmemory.errors import ConfigurationError, Forbidden, Unauthorized

from .conftest import AppFactory

NS = "X-Soma-Namespace"
KEYS = "key-a=ns-a,key-b=ns-b:rw,key-ro=ns-a|ns-b:ro,key-wo=ns-a:wo,key-all=*,key-two=ns-a|ns-b"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def stored(client: TestClient, key: str, **headers: str) -> int:
    response = client.get("/stats", headers={**bearer(key), **headers})
    assert response.status_code == 200, response.text
    total: int = response.json()["total_memories"]
    return total


@pytest.fixture
def evented(make_app: AppFactory) -> Iterator[TestClient]:
    """The evented_enterprise mode's API rules, over TEST-mode backends."""
    with TestClient(make_app(MEMORY_MODE="evented_enterprise", SOMA_API_KEYS=KEYS)) as c:
        yield c


def test_evented_mode_refuses_to_start_without_keys(make_app: AppFactory) -> None:
    for mode in ("evented_enterprise", "cloud_managed"):
        with pytest.raises(ConfigurationError, match="SOMA_API_KEYS"), TestClient(make_app(MEMORY_MODE=mode)):
            pass


def test_a_key_is_required(evented: TestClient) -> None:
    for response in (
        evented.post("/recall", json={"query": "x"}),
        evented.get("/stats", headers={"Authorization": "Bearer wrong"}),
        evented.get("/stats", headers={"Authorization": "Basic a2V5LWE6"}),
        evented.get("/stats", headers={"Authorization": "Bearer"}),
        evented.get("/memories/1,2,3", headers={"Authorization": "key-a"}),
    ):
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


def test_unauthenticated_requests_are_refused_before_validation(evented: TestClient) -> None:
    response = evented.post("/store", json={"coord": "not a coordinate", "payload": 5})
    assert response.status_code == 401


def test_probes_and_metrics_need_no_key(evented: TestClient) -> None:
    assert evented.get("/healthz").status_code == 200
    assert evented.get("/readyz").status_code == 200
    assert evented.get("/metrics").status_code == 200
    assert evented.get("/health").status_code == 401
    assert evented.get("/health", headers=bearer("key-a")).json()["status"] == "ok"


def test_a_key_bound_to_one_namespace_uses_it_by_default(evented: TestClient) -> None:
    response = evented.post(
        "/store", json={"coord": [1], "payload": {"text": "a's"}}, headers=bearer("key-a")
    )
    assert response.status_code == 200
    assert evented.get("/stats", headers=bearer("key-a")).json()["namespace"] == "ns-a"
    assert stored(evented, "key-a") == 1
    assert stored(evented, "key-b") == 0
    assert stored(evented, "key-all", **{NS: "ns-a"}) == 1


def test_key_for_a_can_neither_read_nor_write_b(evented: TestClient) -> None:
    evented.post("/store", json={"coord": [1], "payload": {"text": "b's secret"}}, headers=bearer("key-b"))
    header = {**bearer("key-a"), NS: "ns-b"}
    attempts = [
        evented.post("/store", json={"coord": [2], "payload": {"text": "intruder"}}, headers=header),
        evented.post("/store_bulk", json={"items": [{"coord": [3], "payload": {}}]}, headers=header),
        evented.post("/remember", json={"payload": {"text": "intruder"}}, headers=header),
        evented.post("/recall", json={"query": "secret"}, headers=header),
        evented.post("/recall_batch", json={"queries": ["secret"]}, headers=header),
        evented.get("/memories/1", headers=header),
        evented.delete("/memories/1", headers=header),
        evented.get("/memories/1/history", headers=header),
        evented.get("/range", params={"min": "0", "max": "9"}, headers=header),
        evented.get("/export", headers=header),
        evented.post("/import", content=b"", headers=header),
        evented.get("/stats", headers=header),
        evented.post("/link", json={"from_coord": [1], "to_coord": [1]}, headers=header),
        evented.get("/neighbors", params={"coord": "1"}, headers=header),
    ]
    for response in attempts:
        assert response.status_code == 403, (response.request.url, response.text)
        assert response.json()["error"] == "forbidden"
    # parameters and body fields that look like a namespace change nothing: A's key acts on A
    sneaky = evented.post(
        "/store?namespace=ns-b",
        json={"coord": [9], "payload": {"text": "x"}, "namespace": "ns-b"},
        headers=bearer("key-a"),
    )
    assert sneaky.status_code == 200
    assert stored(evented, "key-b") == 1
    assert evented.get("/memories/1", headers=bearer("key-b")).json()["payload"]["text"] == "b's secret"
    assert stored(evented, "key-a") == 1


def test_read_only_and_write_only_keys(evented: TestClient) -> None:
    evented.post("/store", json={"coord": [1], "payload": {"text": "hello"}}, headers=bearer("key-a"))
    ro = {**bearer("key-ro"), NS: "ns-a"}
    assert evented.post("/recall", json={"query": "hello"}, headers=ro).json()["matches"]
    assert evented.post("/store", json={"coord": [2], "payload": {}}, headers=ro).status_code == 403
    assert evented.delete("/memories/1", headers=ro).status_code == 403
    wo = bearer("key-wo")
    assert evented.post("/store", json={"coord": [2], "payload": {}}, headers=wo).status_code == 200
    assert evented.post("/recall", json={"query": "hello"}, headers=wo).status_code == 403


def test_a_key_for_several_namespaces_must_name_one(evented: TestClient) -> None:
    # no header: the default namespace, which key-two is not bound to
    assert evented.get("/stats", headers=bearer("key-two")).status_code == 403
    assert evented.get("/stats", headers={**bearer("key-two"), NS: "ns-b"}).json()["namespace"] == "ns-b"
    assert evented.get("/stats", headers=bearer("key-all")).json()["namespace"] == "default"
    assert evented.get("/stats", headers={**bearer("key-all"), NS: "anything"}).status_code == 200


def test_development_without_keys_is_open(client: TestClient) -> None:
    assert client.get("/stats", headers={NS: "whatever"}).status_code == 200
    assert client.get("/stats", headers=bearer("any-token")).status_code == 200


def test_development_with_keys_enforces_them(make_app: AppFactory) -> None:
    with TestClient(make_app(MEMORY_MODE="development", SOMA_API_KEYS="dev-key=*")) as c:
        assert c.get("/stats").status_code == 401
        assert c.get("/stats", headers=bearer("dev-key")).status_code == 200


def test_key_file_with_plain_and_hashed_keys(make_app: AppFactory, tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    hashed = hashlib.sha256(b"file-secret-2").hexdigest()
    path.write_text(
        json.dumps(
            {
                "keys": [
                    {"key": "file-secret-1", "name": "agent-a", "read": ["a"], "write": ["a"]},
                    {"key_sha256": hashed, "name": "reader", "read": ["a"]},
                ]
            }
        )
    )
    app = make_app(MEMORY_MODE="cloud_managed", SOMA_API_KEYS_FILE=str(path))
    with TestClient(app) as c:
        assert c.post(
            "/store", json={"coord": [1], "payload": {}}, headers=bearer("file-secret-1")
        ).is_success
        assert stored(c, "file-secret-2") == 1
        denied = c.post("/store", json={"coord": [2], "payload": {}}, headers=bearer("file-secret-2"))
        assert denied.status_code == 403
        assert "reader" not in denied.text and "file-secret" not in denied.text


def test_spec_parsing() -> None:
    grants = parse_key_spec(" k1=a|b:ro , k2=* ,k3=c:wo")
    k1, k2, k3 = grants
    assert k1.digest == hashlib.sha256(b"k1").digest()
    assert k1.read == {"a", "b"} and k1.write == frozenset()
    assert k2.read == k2.write == {"*"}
    assert k3.read == frozenset() and k3.write == {"c"}
    assert k1.name.startswith("key-") and "k1" not in k1.name
    ring = KeyRing(parse_key_spec("k1=a|b:ro,k1=c"))
    (merged,) = ring.grants
    assert merged.read == {"a", "b", "c"} and merged.write == {"c"}
    for bad in ("novalue", "=ns", "k=", "k=a b", "k=a:admin", "k=a/b"):
        with pytest.raises(ConfigurationError, match="SOMA_API_KEYS entry 1"):
            parse_key_spec(bad)


def test_spec_errors_never_echo_the_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_key_spec("super-secret-key=a:admin")
    assert "super-secret-key" not in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        "not a list",
        {"keys": [5]},
        {"keys": [{"read": ["a"]}]},
        {"keys": [{"key": "k"}]},
        {"keys": [{"key": "k", "read": "a"}]},
        {"keys": [{"key_sha256": "abc", "read": ["a"]}]},
        {"keys": [{"key": "k", "read": ["bad ns"]}]},
    ],
)
def test_bad_key_files_are_configuration_errors(data: Any) -> None:
    with pytest.raises(ConfigurationError, match="SOMA_API_KEYS_FILE"):
        parse_key_file(data)


def test_unreadable_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        KeyRing.from_settings(None, str(tmp_path / "missing.json"), "development")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        KeyRing.from_settings(None, str(tmp_path / "bad.json"), "development")


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The presented key's digest meets every configured digest through
    ``hmac.compare_digest``, and the loop does not stop at the first match."""
    ring = KeyRing(parse_key_spec("first=a,second=b,third=c"))
    calls: list[tuple[bytes, bytes]] = []
    real = auth.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth, "compare_digest", counting)
    for token in ("first", "third", "nobody"):
        calls.clear()
        try:
            ring.authenticate(token)
        except Unauthorized:
            assert token == "nobody"
        assert len(calls) == 3, token
        assert {b for _, b in calls} == {g.digest for g in ring.grants}
        assert all(len(a) == len(b) == 32 for a, b in calls)  # digests: length leaks nothing


def test_namespace_rules_directly() -> None:
    ring = KeyRing(parse_key_spec("k=a"), default_namespace="default")
    grant = ring.authenticate("k")
    assert ring.namespace_for(grant, None, "write") == "a"
    with pytest.raises(Forbidden):
        ring.namespace_for(grant, "b", "read")
    open_ring = KeyRing([])
    assert open_ring.authenticate(None) is None
    assert open_ring.namespace_for(None, "b", "write") == "b"
    assert open_ring.namespace_for(None, None, "read") == "default"
