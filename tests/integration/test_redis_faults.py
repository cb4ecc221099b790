"""Redis outages under the cached canonical store: slower, never wrong.

Each test runs its own throw-away ``redis-server`` on a free port (never
the shared one), then kills it (the cache loses everything), freezes it
with SIGSTOP (the server keeps its old entries; commands sent meanwhile
wait in its socket and run late), or cuts it off behind a proxy that drops
every byte (old entries kept, invalidations sent meanwhile lost).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from somafractalmemory.adapters.hybrid import CachedKeyValueStore
from somafractalmemory.adapters.memory.kv import InMemoryKeyValueStore
from somafractalmemory.adapters.redis import RedisCache
from somafractalmemory.models import Memory, MemoryType, memory_id

pytestmark = [pytest.mark.slow, pytest.mark.redis]

NS = "faults"
N = 40
#: A cache call against a dead or frozen server must cost about one timeout.
TIMEOUT = 0.2


class PrivateRedis:
    """A redis-server child process on a fixed port, which tests may kill,
    restart on the same port, freeze and thaw."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir)]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"private redis-server did not start on port {self.port}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def raw(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if os.environ.get("SOMA_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    private = PrivateRedis(tmp_path)
    private.start()
    yield private
    private.stop()


class Partition:
    """A TCP proxy in front of a server. ``cut`` drops every byte both ways
    (commands are lost, replies never come); ``heal`` resets the connections
    that were open, as a partition that outlives TCP's patience does."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dropping = threading.Event()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                return
            self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self._dropping.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                sock.close()

    def cut(self) -> None:
        self._dropping.set()

    def heal(self) -> None:
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._open.clear()
        self._dropping.clear()

    def close(self) -> None:
        self.listener.close()
        self.heal()


def _store(server: PrivateRedis | Partition, canonical: InMemoryKeyValueStore) -> CachedKeyValueStore:
    cache = RedisCache(
        server.url, prefix="sfm:", cooldown_seconds=0.3, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT
    )
    return CachedKeyValueStore(canonical, cache)


def _memories(text: str, version: int) -> list[Memory]:
    now = time.time()
    out = []
    for x in range(N):
        coord = (float(x), 1.0)
        payload = {"text": f"{text} {x}"}
        out.append(Memory(memory_id(NS, coord), NS, coord, payload, MemoryType.EPISODIC, now, now, version))
    return out


def _timed(fn: object, *args: object) -> tuple[object, float]:
    started = time.monotonic()
    result = fn(*args)  # type: ignore[operator]
    return result, time.monotonic() - started


def _wait_for_hits(store: CachedKeyValueStore, ids: list[str], expected: dict[str, Memory]) -> None:
    """Read until the cache serves again; every read on the way must be right."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        before = store.stats["hits"]
        assert store.get_many(NS, ids) == expected
        if store.stats["hits"] - before == len(expected):
            return
        time.sleep(0.05)
    pytest.fail(f"the cache did not recover: {store.stats}")


def test_killed_and_restarted_redis(server: PrivateRedis) -> None:
    store = _store(server, InMemoryKeyValueStore())
    v1 = _memories("v1", 1)
    ids = [m.id for m in v1]
    store.put_many(v1, [])
    assert store.get_many(NS, ids) == {m.id: m for m in v1}
    _wait_for_hits(store, ids, {m.id: m for m in v1})

    server.kill()
    current = {m.id: m for m in v1}
    for round_ in range(2, 6):
        batch = _memories(f"v{round_}", round_)[: N // 2]
        _, spent = _timed(store.put_many, batch, [])  # never raises
        assert spent < 10 * TIMEOUT
        current.update({m.id: m for m in batch})
        gone = ids[N - round_]
        _, spent = _timed(store.delete_many, NS, [gone], [])
        current.pop(gone, None)
        result, spent = _timed(store.get_many, NS, ids)
        assert result == current
        assert spent < 10 * TIMEOUT

    server.start()  # same port, empty
    _wait_for_hits(store, ids, current)
    assert store.canonical.get_many(NS, ids) == current  # nothing written during the outage was lost
    store.close()


def test_frozen_redis_keeps_old_entries_but_never_serves_them(server: PrivateRedis) -> None:
    canonical = InMemoryKeyValueStore()
    store = _store(server, canonical)
    v1 = _memories("v1", 1)
    ids = [m.id for m in v1]
    store.put_many(v1, [])
    _wait_for_hits(store, ids, {m.id: m for m in v1})
    raw = server.raw()
    assert len(list(raw.scan_iter(match="sfm:cache:kv:d:*"))) == N  # the pre-pause copies

    server.signal(signal.SIGSTOP)
    try:
        v2 = _memories("v2", 2)[: N // 2]
        _, spent = _timed(store.put_many, v2, [])
        assert spent < 10 * TIMEOUT
        deleted = ids[-5:]
        assert sorted(store.delete_many(NS, deleted, [])) == sorted(deleted)
        current = {m.id: m for m in v1 if m.id not in deleted}
        current.update({m.id: m for m in v2})
        result, spent = _timed(store.get_many, NS, ids)
        assert result == current
        assert spent < 10 * TIMEOUT
        assert store.cache.pending_invalidations > 0  # type: ignore[attr-defined]
    finally:
        server.signal(signal.SIGCONT)

    # right after the thaw, and for a while: never the pre-pause copy
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert store.get_many(NS, ids) == current
    _wait_for_hits(store, ids, current)
    assert store.cache.pending_invalidations == 0  # type: ignore[attr-defined]

    # another process (no in-process memory of the writes) reads the same Redis
    other = _store(server, canonical)
    assert other.get_many(NS, ids) == current
    assert other.get_many(NS, ids) == current
    assert other.stats["hits"] == 2 * len(current)  # served from the entries refilled after the thaw
    other.cache.close()
    raw.close()
    store.close()


def test_invalidations_lost_in_a_partition_are_sent_again(server: PrivateRedis) -> None:
    """Commands sent during the partition are dropped, not delayed, and the
    writer goes idle afterwards: its journal must still reach Redis, so a
    process with no memory of the writes stops seeing the old copies."""
    proxy = Partition(server.port)
    canonical = InMemoryKeyValueStore()
    writer = _store(proxy, canonical)
    v1 = _memories("v1", 1)
    ids = [m.id for m in v1]
    writer.put_many(v1, [])
    _wait_for_hits(writer, ids, {m.id: m for m in v1})
    proxy.cut()
    v2 = _memories("v2", 2)[: N // 2]
    writer.put_many(v2, [])
    deleted = ids[-5:]
    writer.delete_many(NS, deleted, [])
    raw = server.raw()  # straight to the server, around the proxy
    assert len(list(raw.scan_iter(match="sfm:cache:kv:d:*"))) == N  # no invalidation got through
    proxy.heal()
    current = {m.id: m for m in v1 if m.id not in deleted}
    current.update({m.id: m for m in v2})
    time.sleep(1.0)  # the writer makes no call; its journal is retried in the background
    reader = _store(proxy, canonical)
    assert reader.get_many(NS, ids) == current
    assert writer.get_many(NS, ids) == current
    reader.cache.close()
    writer.close()
    raw.close()
    proxy.close()
