"""Helpers of the event-pipeline tests: evented wiring on real services and
workers run in a thread (sharing the memory system's backends) or as
``soma worker`` subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from somafractalmemory.core import SomaFractalMemoryEnterprise
from somafractalmemory.eventing.config import KafkaSettings
from somafractalmemory.eventing.runtime import WorkerConfig, WorkerRuntime
from somafractalmemory.factory import create_memory_system
from somafractalmemory.settings import Settings


def evented_memory(config: dict[str, Any], namespace: str = "events") -> SomaFractalMemoryEnterprise:
    return create_memory_system("evented_enterprise", namespace, config)


def kafka_settings(config: dict[str, Any]) -> KafkaSettings:
    found = KafkaSettings.resolve(config["kafka"], Settings())
    assert found is not None
    return found


class ThreadWorker:
    """A ``WorkerRuntime`` over the memory system's own backends, in a thread."""

    def __init__(self, memory: SomaFractalMemoryEnterprise, config: dict[str, Any], **options: Any) -> None:
        options.setdefault("group", f"g-{uuid.uuid4().hex[:8]}")
        options.setdefault("relay", True)
        self.runtime = WorkerRuntime(memory.backends, kafka_settings(config), WorkerConfig(**options))
        self.summary: dict[str, float] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.summary = self.runtime.run()
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def start(self) -> ThreadWorker:
        self.thread.start()
        return self

    def join(self, timeout: float = 60.0) -> dict[str, float]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not finish in time"
        if self.error is not None:
            raise self.error
        return self.summary

    def stop(self, timeout: float = 30.0) -> dict[str, float]:
        self.runtime.stop()
        return self.join(timeout)

    def value(self, name: str) -> float:
        return self.runtime.metrics.value(name)


def burst(memory: SomaFractalMemoryEnterprise, config: dict[str, Any], **options: Any) -> dict[str, float]:
    """Run one worker (with the relay) until caught up; return its counters."""
    return ThreadWorker(memory, config, burst=True, **options).start().join(90)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def soma_worker(config_file: Path, *args: str) -> subprocess.Popen[bytes]:
    """``soma --json --mode evented_enterprise --config FILE worker ARGS`` as a subprocess
    (it prints its counters as JSON when it exits)."""
    soma = str(Path(sys.executable).with_name("soma"))
    return subprocess.Popen(
        [soma, "--json", "--mode", "evented_enterprise", "--config", str(config_file), "worker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config))
    return path


def scrape(port: int, name: str) -> float:
    """The sum of a metric's samples on a worker's /metrics (0 when unreachable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head = line.split(" ")[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total
