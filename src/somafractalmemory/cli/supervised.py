"""Workers of ``soma serve --workers N`` stop when their supervisor is gone.

uvicorn's supervisor stops its workers when it is asked to stop (SIGTERM,
Ctrl-C). Killed outright (SIGKILL, the OOM killer), it cannot: its workers
went on serving, holding the port, so a restarted ``soma serve`` could not
listen there and nothing would ever stop them.

The supervisor puts its pid in the environment its workers inherit
(``SOMA_SUPERVISOR_PID``); each worker's app factory (``create_app`` here)
starts a thread that checks once a second that its parent is still that
process. When it is not (the worker was handed to another parent), the
worker sends itself SIGTERM: it stops accepting, drains in-flight requests
for up to ``--timeout-graceful`` seconds, closes its backends and exits, as
on any requested stop.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

__all__ = ["SUPERVISOR_PID", "WORKER_APP_FACTORY", "create_app", "watch_supervisor"]

SUPERVISOR_PID = "SOMA_SUPERVISOR_PID"
WORKER_APP_FACTORY = "somafractalmemory.cli.supervised:create_app"
CHECK_EVERY = 1.0  # seconds

_log = logging.getLogger("uvicorn.error")


def watch_supervisor(every: float = CHECK_EVERY) -> threading.Thread | None:
    """In a worker of a supervisor that set ``SOMA_SUPERVISOR_PID``: a daemon
    thread that sends this process SIGTERM once its parent is another process.
    None where there is no supervisor to watch (a single-process server)."""
    raw = os.environ.get(SUPERVISOR_PID, "")
    if not raw.isdigit() or int(raw) == os.getpid():
        return None
    supervisor = int(raw)

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(every)
        _log.warning("the soma serve supervisor (pid %d) is gone: this worker stops", supervisor)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="soma-supervisor-watch", daemon=True)
    thread.start()
    return thread


def create_app() -> Any:
    """The app of one worker of ``soma serve --workers N`` (uvicorn's factory mode)."""
    from ..api.app import create_app as build

    watch_supervisor()
    return build()
