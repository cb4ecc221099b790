"""``cli.listen``: one SO_REUSEPORT socket per ``soma serve`` worker."""

from __future__ import annotations

import os
import pickle
import socket
from multiprocessing.reduction import ForkingPickler

import pytest

from somafractalmemory.cli.listen import WorkerListener, balanced, listening, run_workers
from somafractalmemory.cli.supervised import SUPERVISOR_PID, watch_supervisor
from somafractalmemory.errors import ConfigurationError

pytestmark = pytest.mark.skipif(not balanced(), reason="SO_REUSEPORT balancing is Linux only")


def test_a_listener_sent_to_a_worker_becomes_a_socket_of_its_own_on_the_same_address() -> None:
    placeholder = WorkerListener.bind_address("127.0.0.1", 0)
    port = placeholder.getsockname()[1]
    members = [pickle.loads(ForkingPickler.dumps(placeholder)) for _ in range(2)]
    try:
        assert all(type(m) is socket.socket for m in members)
        assert {m.fileno() for m in members}.isdisjoint({placeholder.fileno()})
        assert [m.getsockname() for m in members] == [("127.0.0.1", port)] * 2
        assert all(m.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for m in members)
        assert listening(port) == 0  # the supervisor's socket only holds the address
        for m in members:
            m.listen()
        assert listening(port) == 2
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]
        accepted = []
        for m in members:
            m.settimeout(0)
            while True:
                try:
                    conn, _ = m.accept()
                except BlockingIOError:
                    break
                accepted.append(m)
                conn.close()
        for c in clients:
            c.close()
        # every connection reached a worker's socket, and both got some (64 by a hash: 2^-63 to fail)
        assert len(accepted) == 64
        assert {id(m) for m in accepted} == {id(m) for m in members}
    finally:
        for m in members:
            m.close()
        placeholder.close()


def test_a_taken_address_fails_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port}"):
            run_workers(object(), "127.0.0.1", port)


def test_a_port_another_server_listens_on_is_refused_even_with_reuseport() -> None:
    other = WorkerListener.bind_address("127.0.0.1", 0)  # another `soma serve` on the port
    port = other.getsockname()[1]
    member = pickle.loads(ForkingPickler.dumps(other))
    member.listen()
    try:
        with pytest.raises(ConfigurationError, match="in use"):
            run_workers(object(), "127.0.0.1", port)
    finally:
        member.close()
        other.close()


def test_only_a_worker_of_a_supervisor_watches_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SUPERVISOR_PID, raising=False)
    assert watch_supervisor() is None  # a single-process server
    monkeypatch.setenv(SUPERVISOR_PID, str(os.getpid()))
    assert watch_supervisor() is None  # the supervisor itself
    monkeypatch.setenv(SUPERVISOR_PID, str(os.getppid()))
    thread = watch_supervisor(every=3600)  # checks at once, then sleeps (a daemon: ends with the tests)
    assert thread is not None and thread.daemon
    thread.join(0.2)
    assert thread.is_alive()  # its parent is still there: no SIGTERM, it goes on watching
