"""One listening socket per ``soma serve`` worker, so the kernel balances connections.

uvicorn's own multi-worker mode binds one socket in the supervisor and every
worker accepts from it. Whichever worker is awake takes a burst of new
connections: 7 or 8 of 8 keep-alive connections, opened together, went to
one of two workers, which then queued every request while the other idled.

On Linux, sockets bound to one address with ``SO_REUSEPORT`` form a group
and the kernel hands each new connection to one of them by a hash of its
addresses, so each worker gets its share. ``WorkerListener`` is the
supervisor's socket: bound with ``SO_REUSEPORT`` (it holds the address, and
a taken port fails here, before any worker starts) but never listening.
uvicorn spawns its workers and sends them their sockets by pickling; a
``WorkerListener`` pickles to "open a new socket of the group on this
address", so each worker, and each replacement of a worker that died,
listens on a socket of its own. If a socket ever reached a worker without
pickling it would be the supervisor's, listening then: one shared socket,
uvicorn's usual behaviour.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from typing import Any, cast

__all__ = ["WorkerListener", "balanced", "listening", "open_member", "run_workers"]

_log = logging.getLogger("uvicorn.error")


def balanced() -> bool:
    """Whether this system balances connections over ``SO_REUSEPORT`` sockets (Linux does)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listening(port: int) -> int:
    """How many sockets listen on TCP ``port`` on this machine (Linux ``/proc``):
    with ``soma serve --workers N``, N once every worker has started."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                lines = rows.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            count += fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port
    return count


def open_member(
    family: int, address: tuple[Any, ...], kind: type[socket.socket] = socket.socket
) -> socket.socket:
    """A new, bound (not yet listening) socket of the ``SO_REUSEPORT`` group at ``address``."""
    sock = kind(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class WorkerListener(socket.socket):
    """The supervisor's placeholder; becomes a fresh group member in each worker."""

    @classmethod
    def bind_address(cls, host: str, port: int) -> WorkerListener:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = cast(WorkerListener, open_member(family, (host, port), cls))
        # SO_REUSEPORT would also let this bind join another server's group
        # on the port (a second `soma serve` started by mistake): refuse, as
        # a plain bind would have
        if listening(sock.getsockname()[1]):
            sock.close()
            raise OSError(errno.EADDRINUSE, "address already in use by a listening socket")
        return sock

    def __reduce__(self) -> tuple[Any, tuple[int, tuple[Any, ...]]]:
        return open_member, (int(self.family), tuple(self.getsockname()))


def run_workers(config: Any, host: str, port: int) -> None:
    """uvicorn's supervisor over ``config.workers`` processes, each listening on its own socket."""
    from uvicorn.supervisors import Multiprocess

    try:
        sock = WorkerListener.bind_address(host, port)
    except OSError as exc:
        from ..errors import ConfigurationError

        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    bound = sock.getsockname()
    _log.info("listening on http://%s:%d, one socket per worker (SO_REUSEPORT)", bound[0], bound[1])
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
