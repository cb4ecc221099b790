"""A real ``soma serve`` process: serve over TCP, drain on SIGTERM and exit 0."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from somafractalmemory.client import SomaClient
from somafractalmemory.errors import InvalidInput, NotFound

GRACEFUL = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def soma_command() -> list[str]:
    script = shutil.which("soma", path=str(Path(sys.executable).parent))
    if script:
        return [script]
    return [sys.executable, "-c", "from somafractalmemory.cli.main import main; main()"]


class Server:
    def __init__(
        self, tmp: Path, *args: str, mode: str = "development", env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "server.log"
        self.openapi = tmp / "openapi.json"
        environ = {
            **os.environ,
            "SOMA_DATA_DIR": str(tmp / "data"),
            "SOMA_FORCE_HASH_EMBEDDINGS": "1",
            "SOMA_OPENAPI_PATH": str(self.openapi),
            "SOMA_RATE_LIMIT_MAX": "0",
            **(env or {}),
        }
        for name in ("SOMA_API_KEYS", "SOMA_API_KEYS_FILE", "MEMORY_MODE", "POSTGRES_URL", "REDIS_URL"):
            if env is None or name not in env:
                environ.pop(name, None)
        command = [*soma_command(), "--mode", mode, "serve", "--port", str(self.port), *args]
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                command, cwd=tmp, env=environ, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not up after {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=GRACEFUL + 10)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path, "--timeout-graceful", str(GRACEFUL))
    try:
        s.wait_ready()
        yield s
    finally:
        s.kill()


def test_soma_serve_end_to_end(server: Server) -> None:
    with SomaClient(server.base_url, timeout=10) as soma:
        assert soma.readyz().ready is True
        soma.store((1, 2, 3), {"task": "write the api docs", "importance": 5})
        soma.store((4, 5, 6), {"fact": "the server is real"}, "semantic")
        assert soma.store_bulk([((i, 0, 0), {"text": f"bulk memory {i}"}) for i in range(50)]) == 50
        assert soma.recall("api docs")[0]["task"] == "write the api docs"
        assert soma.link((1, 2, 3), (4, 5, 6), "supports") is True
        assert soma.shortest_path((1, 2, 3), (4, 5, 6)) == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
        assert soma.stats().total_memories == 52

        buffer = io.StringIO()
        lines = soma.export(buffer)
        assert lines > 52
        with SomaClient(server.base_url, namespace="restored", timeout=10) as restored:
            counts = restored.import_memories(io.BytesIO(buffer.getvalue().encode()))
            assert (counts.memories, counts.links) == (52, 1)
            assert restored.shortest_path((1, 2, 3), (4, 5, 6)) == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
            assert restored.recall("api docs")[0]["task"] == "write the api docs"

        with pytest.raises(InvalidInput) as caught:
            soma.recall("x", top_k=0)
        assert caught.value.field == "top_k"
        with pytest.raises(NotFound):
            soma.get((9, 9, 9))
        assert "soma_http_requests_total" in soma.metrics()

    response = httpx.get(server.base_url + "/stats", headers={"X-Request-ID": "from-test"})
    assert response.headers["x-request-id"] == "from-test"
    spec = json.loads(server.openapi.read_text())
    assert "/recall" in spec["paths"]

    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < GRACEFUL
    records = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("logger") == "somafractalmemory.api.access"]
    assert any(r.get("request_id") == "from-test" and r["route"] == "/stats" for r in access)
    assert any(r.get("message") == "api stopped" for r in records)


def test_sigterm_drains_in_flight_requests(server: Server) -> None:
    """A bulk store (a few seconds here) in flight when SIGTERM arrives still completes."""
    items = [{"coord": [i, 1], "payload": {"text": f"drain {i} of the in-flight batch"}} for i in range(3000)]
    result: dict[str, Any] = {}

    def slow_bulk() -> None:
        try:
            response = httpx.post(server.base_url + "/store_bulk", json={"items": items}, timeout=60)
            result["status"] = response.status_code
            result["body"] = response.json()
        except Exception as exc:  # reported by the assertions below
            result["error"] = repr(exc)

    worker = threading.Thread(target=slow_bulk)
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the bulk request is being served
        text = httpx.get(server.base_url + "/metrics").text
        line = next(x for x in text.splitlines() if x.startswith("soma_http_requests_in_flight"))
        if float(line.split()[-1]) >= 2:  # the bulk request and this one
            break
        if "status" in result or "error" in result:
            break
    assert "status" not in result, "the bulk request finished before SIGTERM; make it bigger"
    assert server.stop() == 0
    worker.join(timeout=30)
    assert result.get("status") == 200, result
    assert result["body"] == {"stored": 3000}


def test_evented_mode_without_keys_exits_3_with_one_clear_line(tmp_path: Path) -> None:
    s = Server(tmp_path, mode="evented_enterprise")
    try:
        code = s.process.wait(timeout=60)
    finally:
        s.kill()
    output = s.log.read_text()
    assert code == 3, output
    assert "SOMA_API_KEYS" in output
    assert "Traceback" not in output


def test_unreachable_backend_exits_3_naming_the_setting(tmp_path: Path) -> None:
    s = Server(tmp_path, env={"POSTGRES_URL": "postgresql://soma@127.0.0.1:1/soma"})
    try:
        code = s.process.wait(timeout=60)
    finally:
        s.kill()
    output = s.log.read_text()
    assert code == 3, output
    errors = [json.loads(line) for line in output.splitlines() if '"level": "error"' in line]
    assert any("POSTGRES_URL" in e["message"] for e in errors), output
    assert "Traceback" not in output
