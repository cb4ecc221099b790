"""The PostgreSQL server restarts while a writer is busy.

Calls during the outage raise ``BackendUnavailable`` and nothing else;
every batch is either fully stored (memories and their history) or absent;
the same pool serves again once the server is back. This restarts the
shared test server, so it is the only test that does, and it makes sure the
server is running when it ends, pass or fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from somafractalmemory.adapters.postgres import PostgresStore
from somafractalmemory.errors import BackendUnavailable
from somafractalmemory.models import HistoryEntry, Memory, MemoryType, memory_id

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

NS = "restart"
BATCH = 50


def _cluster() -> tuple[str, str] | None:
    """``(version, name)`` of the local cluster on port 5432, if we can control it."""
    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        return None
    for version in sorted(os.listdir("/etc/postgresql")):
        conf = os.path.join("/etc/postgresql", version, "main", "postgresql.conf")
        if os.path.exists(conf):
            return version, "main"
    return None


def _ctl(action: str, cluster: tuple[str, str]) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1.0):
            return True
    except OSError:
        return False


def _wait_up(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _up():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def cluster(pg_schema: tuple[str, str]) -> Iterator[tuple[str, str]]:
    found = _cluster()
    if found is None:
        pytest.skip("no local PostgreSQL cluster controllable with pg_ctlcluster")
    try:
        yield found
    finally:
        if not _wait_up(5.0):
            _ctl("start", found)
        assert _wait_up(60.0), "PostgreSQL did not come back"


def _batch(n: int) -> tuple[list[Memory], list[HistoryEntry]]:
    memories, history = [], []
    for j in range(BATCH):
        coord = (float(n), float(j))
        mid = memory_id(NS, coord)
        payload = {"text": f"batch {n} item {j}", "batch": n}
        memories.append(Memory(mid, NS, coord, payload, MemoryType.SEMANTIC, 1.0, 1.0, 1))
        history.append(HistoryEntry(NS, mid, coord, 1, "created", payload, MemoryType.SEMANTIC, 1.0))
    return memories, history


def test_writes_survive_a_server_restart(pg_schema: tuple[str, str], cluster: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    store = PostgresStore(dsn, schema=schema, max_size=4, timeout=2.0, connect_timeout=2.0)
    store.migrate()
    attempted: list[int] = []
    stored: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            memories, history = _batch(n)
            attempted.append(n)
            try:
                store.put_many(memories, history)
                stored.append(n)
            except BaseException as exc:  # every type is recorded and checked below
                failures.append(exc)
                time.sleep(0.05)
            n += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        before = len(stored)
        # stop, keep the server down until the writer has seen the outage, then start:
        # a plain restart can be quick enough that no call happens to fail
        _ctl("stop", cluster)
        down_until = time.monotonic() + 20.0
        while time.monotonic() < down_until and not failures:
            time.sleep(0.1)
        _ctl("start", cluster)
        assert _wait_up(60.0)
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and not (failures and len(stored) >= before + 20):
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=30.0)

    assert before > 0, "the writer never wrote before the restart"
    assert failures, "the restart went unnoticed; the test did not exercise an outage"
    unexpected = [exc for exc in failures if not isinstance(exc, BackendUnavailable)]
    assert unexpected == [], unexpected
    assert all(exc.setting == "POSTGRES_URL" for exc in failures if isinstance(exc, BackendUnavailable))
    assert len(stored) >= before + 20, "the pool did not serve again after the restart"

    # Nothing half-written: each batch is whole (memories and history) or absent.
    store.health()
    for n in attempted:
        memories, _ = _batch(n)
        present = store.get_many(NS, [m.id for m in memories])
        assert len(present) in (0, BATCH), f"batch {n}: {len(present)} of {BATCH} memories"
        with_history = sum(1 for m in memories if store.history(NS, m.id))
        assert with_history == len(present), f"batch {n}: history and memories disagree"
        if n in stored:
            assert len(present) == BATCH
    store.close()
