"""Real processes sharing one DEVELOPMENT data directory.

The ``soma`` CLI writes while a memory system in this test process reads;
``soma serve --workers 2`` answers every recall from whichever worker takes
the connection, and a CLI write made while it runs is recalled through it.
Each process keeps its own vector and keyword indexes and follows the
canonical store's change feed (``services.follower``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from somafractalmemory.cli.listen import balanced, listening
from somafractalmemory.factory import create_memory_system

from .events_support import wait_for

INTERVAL = 0.2  # SOMA_SYNC_INTERVAL_MS default
SETTLE = INTERVAL + 0.05


def soma() -> list[str]:
    script = shutil.which("soma", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "somafractalmemory.cli.main"]


def environment(data: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "SOMA_DATA_DIR": str(data),
        "SOMA_FORCE_HASH_EMBEDDINGS": "1",
        "SOMA_OPENAPI_PATH": "",
        "SOMA_RATE_LIMIT_MAX": "0",
    }
    for name in (
        "SOMA_API_KEYS",
        "SOMA_API_KEYS_FILE",
        "MEMORY_MODE",
        "POSTGRES_URL",
        "REDIS_URL",
        "QDRANT_URL",
    ):
        env.pop(name, None)
    return env


def cli(data: Path, *args: str) -> str:
    done = subprocess.run(
        [*soma(), "--mode", "development", "--data-dir", str(data), *args],
        env=environment(data),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cli_writes_reach_a_running_process_within_the_interval(tmp_path: Path) -> None:
    data = tmp_path / "data"
    memory = create_memory_system("development", "default", {"data_dir": str(data)})
    try:
        memory.recall("warm up")
        cli(data, "store", "1,2,3", '{"text": "the purple elephant dances"}')
        time.sleep(SETTLE)
        assert [h["text"] for h in memory.recall("purple elephant", top_k=1)] == [
            "the purple elephant dances"
        ]

        cli(data, "store", "1,2,3", '{"text": "the green giraffe sings"}')
        time.sleep(SETTLE)
        assert [h["text"] for h in memory.recall("green giraffe", top_k=1)] == ["the green giraffe sings"]
        assert memory.keyword_search("elephant") == []

        cli(data, "delete", "1,2,3")
        time.sleep(SETTLE)
        assert memory.recall("green giraffe") == [] and memory.memory_stats()["vectors"] == 0

        memory.store_memory((4, 5, 6), {"text": "stored by the long-running process"})
        out = json.loads(cli(data, "--json", "recall", "long-running process", "-k", "1"))
        assert [h["text"] for h in out] == ["stored by the long-running process"]
    finally:
        memory.close()


# -- soma serve --workers 2 -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, data: Path, log: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [
            *soma(),
            "--mode",
            "development",
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(  # a session of its own: kill() takes the workers too
                command, env=environment(data), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready:\n{log.read_text()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        """SIGKILL the supervisor and its workers (killed alone, it would leave them running)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    # a new connection per request, so the workers share the requests
    with httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        yield c


def recall_top(client: httpx.Client, server: Server, query: str) -> str | None:
    response = client.post(server.url + "/recall", json={"query": query, "top_k": 1})
    assert response.status_code == 200, response.text
    matches: list[dict[str, Any]] = response.json()["matches"]
    return str(matches[0]["text"]) if matches else None


def recall_pids(log: Path) -> set[int]:
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return {
        r["pid"]
        for r in records
        if r.get("logger") == "somafractalmemory.api.access" and r.get("route") == "/recall"
    }


def test_every_worker_recalls_every_write(tmp_path: Path, client: httpx.Client) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    texts = [
        f"memory {i}: {w} {v}"
        for i, (w, v) in enumerate((f"word{i}", f"topic{i * 7 % 200}") for i in range(200))
    ]
    server = Server(data, log)
    try:
        for i, text in enumerate(texts):
            response = client.post(
                server.url + "/store", json={"coord": [i, 0, 0], "payload": {"text": text}}
            )
            assert response.status_code == 200, response.text
        time.sleep(SETTLE)
        missed = [t for t in texts if recall_top(client, server, t) != t]
        assert not missed, f"{len(missed)} of {len(texts)} missed, e.g. {missed[:3]}"
        assert len(recall_pids(log)) == 2, "both workers must have answered recalls"

        cli(data, "store", "500,0,0", '{"text": "written by the cli while serving"}')
        time.sleep(SETTLE)
        for _ in range(10):
            assert (
                recall_top(client, server, "written by the cli while serving")
                == "written by the cli while serving"
            )
        assert server.stop() == 0
    finally:
        server.kill()

    server = Server(data, log)  # restart: snapshots plus the changes since
    try:
        missed = [
            t for t in [*texts, "written by the cli while serving"] if recall_top(client, server, t) != t
        ]
        assert not missed, f"{len(missed)} missed after restart, e.g. {missed[:3]}"
        opened = [
            json.loads(line)["message"] for line in log.read_text().splitlines() if "indexes opened" in line
        ]
        assert opened[-1].endswith(" 0 reconciled"), opened  # the restart used the snapshots
        assert server.stop() == 0
    finally:
        server.kill()


@pytest.mark.skipif(not balanced(), reason="one socket per worker is Linux only")
def test_each_worker_listens_on_a_socket_of_its_own_and_so_does_a_replacement(
    tmp_path: Path, client: httpx.Client
) -> None:
    log = tmp_path / "server.log"
    server = Server(tmp_path / "data", log)
    try:
        wait_for(lambda: listening(server.port) == 2, 60, "two workers listening")
        for _ in range(200):  # new connections, spread by the kernel over both sockets
            recall_top(client, server, "anything")
            if len(recall_pids(log)) == 2:
                break
        first = recall_pids(log)
        assert len(first) == 2, "both workers must have answered"
        os.kill(min(first), signal.SIGKILL)

        def replaced() -> bool:  # uvicorn's supervisor starts a replacement with a socket of its own
            try:
                recall_top(client, server, "anything")
            except httpx.TransportError:  # reset: it reached the killed worker's socket as it died
                return False
            return bool(recall_pids(log) - first)

        wait_for(replaced, 90, "the replacement to answer")
        assert listening(server.port) == 2
        assert server.stop() == 0
    finally:
        server.kill()


def stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command (state, parent, ...); None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` now (Linux ``/proc``)."""
    found = set()
    for entry in Path("/proc").iterdir():
        fields = stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None and int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    fields = stat(pid)
    return fields is not None and fields[0] != "Z"  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path, client: httpx.Client) -> None:
    log = tmp_path / "server.log"
    server = Server(tmp_path / "data", log)
    try:
        wait_for(lambda: listening(server.port) == 2, 60, "two workers listening")
        workers = children(server.process.pid)
        assert len(workers) >= 2  # the workers, and multiprocessing's resource tracker
        os.kill(server.process.pid, signal.SIGKILL)  # the supervisor alone
        server.process.wait()
        wait_for(lambda: not any(alive(pid) for pid in workers), 30, "the workers to stop")
        assert listening(server.port) == 0
        with pytest.raises(httpx.TransportError):
            recall_top(client, server, "anything")
        assert "supervisor" in log.read_text() and "is gone" in log.read_text()
    finally:
        server.kill()
