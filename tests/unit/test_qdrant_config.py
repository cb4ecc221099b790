"""QdrantVectorStore settings: validation, failure at start, error translation.

Everything here runs without a Qdrant server: bad settings are refused
before any request, an unreachable server is reported quickly with the
setting to fix, and HTTP errors from something listening on the port are
translated (a tiny HTTP server stands in for a misbehaving endpoint).
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qdrant_client")

from somafractalmemory.adapters.qdrant import QdrantVectorStore, collection_name
from somafractalmemory.errors import BackendUnavailable, ConfigurationError, InvalidInput, MissingDependency
from somafractalmemory.interfaces.storage import IVectorStore, VectorPoint
from somafractalmemory.models import MemoryType

DIM = 4
SERVER = "QDRANT_URL / QDRANT_HOST"


def _point(vector: list[float] | None = None, **kw: Any) -> VectorPoint:
    values: dict[str, Any] = dict(
        id=str(uuid.uuid4()),
        vector=np.asarray(vector or [1.0, 0, 0, 0], dtype=np.float32),
        importance_norm=0.5,
        memory_type=MemoryType.EPISODIC,
    )
    values.update(kw)
    return VectorPoint(**values)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({}, "exactly one of url, host, path or location (got none)"),
        ({"url": "http://localhost:6333", "location": ":memory:"}, "got url, location"),
        ({"host": "localhost", "path": "x"}, "got host, path"),
        ({"location": "http://localhost:6333"}, "location must be ':memory:'"),
        ({"location": ":memory:", "api_key": "secret"}, "api_key needs a server"),
        ({"location": ":memory:", "https": True}, "https needs a server"),
        ({"location": ":memory:", "prefer_grpc": True}, "prefer_grpc needs a server"),
        ({"url": "localhost:6333"}, "QDRANT_URL must start with http:// or https://"),
        ({"url": "ftp://example.org"}, "QDRANT_URL must start with http:// or https://"),
        ({"host": "http://localhost"}, "QDRANT_HOST must be a host name"),
        ({"host": ""}, "QDRANT_HOST must be a host name"),
        ({"host": "localhost", "port": 0}, "port must be 1-65535"),
        ({"host": "localhost", "port": 70000}, "port must be 1-65535"),
        ({"host": "localhost", "grpc_port": True}, "grpc_port must be 1-65535"),
        ({"location": ":memory:", "timeout": 0}, "timeout must be a positive number"),
        ({"location": ":memory:", "timeout": float("nan")}, "timeout must be a positive number"),
        ({"location": ":memory:", "dim": 0}, "dim must be an integer 1-65536"),
        ({"location": ":memory:", "dim": True}, "dim must be an integer 1-65536"),
        ({"location": ":memory:", "dim": 3.0}, "dim must be an integer 1-65536"),
        ({"location": ":memory:", "collection_prefix": ""}, "collection_prefix must be"),
        ({"location": ":memory:", "collection_prefix": "a/b"}, "collection_prefix must be"),
        ({"location": ":memory:", "indexed_keys": {"tags": "vector"}}, "cannot index 'tags'"),
        ({"location": ":memory:", "indexed_keys": {"a b": "keyword"}}, "cannot index 'a b'"),
        ({"path": ""}, "path must be a directory"),
    ],
)
def test_bad_settings_are_refused_before_any_request(kwargs: dict[str, Any], fragment: str) -> None:
    kwargs.setdefault("dim", DIM)
    started = time.perf_counter()
    with pytest.raises(ConfigurationError) as info:
        QdrantVectorStore(**kwargs)
    assert fragment in str(info.value)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "http://127.0.0.1:1"},
        {"host": "127.0.0.1", "port": 1},
        {"url": "https://127.0.0.1:1", "api_key": "secret"},
        {"host": "127.0.0.1", "port": 1, "grpc_port": 1, "prefer_grpc": True},
    ],
    ids=["url", "host-port", "https-api-key", "grpc"],
)
def test_unreachable_server_fails_at_start_naming_the_setting(kwargs: dict[str, Any]) -> None:
    started = time.perf_counter()
    with pytest.raises(BackendUnavailable) as info:
        QdrantVectorStore(dim=DIM, timeout=3, **kwargs)
    elapsed = time.perf_counter() - started
    assert info.value.setting == SERVER
    assert info.value.service == "Qdrant"
    assert "check QDRANT_URL / QDRANT_HOST" in str(info.value)
    assert "127.0.0.1" in str(info.value)
    assert info.value.__cause__ is not None  # the driver error is kept as the cause, not raised
    assert elapsed < 4.0


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 503

    def do_GET(self) -> None:
        body = b'{"status": {"error": "nope"}}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_status() -> Iterator[Any]:
    """Start an HTTP endpoint answering every request with a chosen status."""
    servers: list[http.server.HTTPServer] = []

    def start(status: int) -> str:
        handler = type("H", (_Handler,), {"status": status})
        server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "status, setting", [(503, SERVER), (500, SERVER), (401, "QDRANT_API_KEY"), (403, "QDRANT_API_KEY")]
)
@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_http_errors_become_backend_unavailable(http_status: Any, status: int, setting: str) -> None:
    url = http_status(status)
    with pytest.raises(BackendUnavailable) as info:
        QdrantVectorStore(url=url, dim=DIM, api_key="wrong" if status in (401, 403) else None)
    assert info.value.setting == setting
    assert f"HTTP {status}" in str(info.value)


def test_local_path_in_use_and_unusable_path(tmp_path: Path) -> None:
    first = QdrantVectorStore(path=tmp_path / "q", dim=DIM)
    try:
        with pytest.raises(BackendUnavailable) as info:
            QdrantVectorStore(path=tmp_path / "q", dim=DIM)
        assert info.value.setting == "QDRANT_PATH"
    finally:
        first.close()
    QdrantVectorStore(path=str(tmp_path / "q"), dim=DIM).close()  # released on close
    afile = tmp_path / "file"
    afile.write_text("not a directory")
    with pytest.raises(BackendUnavailable) as info:
        QdrantVectorStore(path=afile, dim=DIM)
    assert info.value.setting == "QDRANT_PATH"


def test_a_collection_with_other_vectors_is_a_configuration_error(tmp_path: Path) -> None:
    store = QdrantVectorStore(path=tmp_path / "q", dim=DIM)
    store.upsert("ns", [_point()])
    store.close()
    other = QdrantVectorStore(path=tmp_path / "q", dim=DIM + 1)
    try:
        with pytest.raises(ConfigurationError, match="reindex"):
            other.count("ns")
        assert other.count("other-ns") == 0  # untouched namespaces are fine
    finally:
        other.close()


def test_closed_store_raises_and_close_is_idempotent() -> None:
    store = QdrantVectorStore(location=":memory:", dim=DIM)
    assert isinstance(store, IVectorStore)
    store.health()
    store.close()
    store.close()
    for call in (store.health, lambda: store.count("ns"), lambda: store.upsert("ns", [_point()])):
        with pytest.raises(BackendUnavailable, match="closed"):
            call()


def test_inputs_are_checked() -> None:
    store = QdrantVectorStore(location=":memory:", dim=DIM)
    cases = [
        ([_point(id="")], "points[0].id"),
        ([_point(), _point(id=7)], "points[1].id"),
        ([_point(version=-1)], "points[0].version"),
        ([_point(memory_type="procedural")], "points[0].memory_type"),
        ([_point(vector=[1.0, 0.0, 0.0])], "points[0].vector"),
        ([_point(), _point(vector=[float("nan"), 0.0, 0.0, 0.0])], "points[1].vector"),
        ([_point(importance_norm=-0.1)], "points[0].importance_norm"),
        ([_point(importance_norm=1.5)], "points[0].importance_norm"),
        ([_point(importance_norm=float("nan"))], "points[0].importance_norm"),
    ]
    for points, field in cases:
        with pytest.raises(InvalidInput) as info:
            store.upsert("ns", points)
        assert info.value.field == field
    assert store.count("ns") == 0  # nothing was written by a refused batch
    with pytest.raises(InvalidInput):
        store.search("ns", np.zeros(DIM + 1, dtype=np.float32), 3)
    store.delete("ns", ["not-a-uuid"])  # unknown ids are ignored
    store.close()


def test_collection_names_are_safe_and_distinct() -> None:
    namespaces = [
        "ns_1",
        "ns-1",
        "ns.1",
        "ns:1",
        "Ns_1",
        "ns_5f1",
        "é",
        "_c3_a9",
        "x" * 128,
        "x" * 127 + "y",
        "日本語" * 40,
        "日本語" * 39 + "x",
    ]
    names = [collection_name("sfm_", ns) for ns in namespaces]
    assert len(set(names)) == len(names)
    for name in names:
        assert name.startswith("sfm_")
        assert len(name) <= 200
        assert all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in name)
    assert collection_name("sfm_", "ns_1") == "sfm_ns_5f1"
    assert collection_name("sfm_", "team-a") == "sfm_team-a"


def test_missing_driver_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['qdrant_client'] = None\n"
        "from somafractalmemory.errors import MissingDependency\n"
        "from somafractalmemory.adapters import registry\n"
        "try:\n"
        "    registry.load('vector', 'qdrant')\n"
        "except MissingDependency as exc:\n"
        "    assert isinstance(exc, ImportError)\n"
        "    print(exc)\n"
        "try:\n"
        "    import somafractalmemory.adapters.qdrant.store\n"
        "except MissingDependency as exc:\n"
        "    print(exc.extra)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "pip install 'somafractalmemory[qdrant]'" in out.stdout
    assert out.stdout.strip().endswith("qdrant")
    assert issubclass(MissingDependency, ImportError)
