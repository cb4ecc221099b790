"""Pausing CPython's cyclic garbage collector around bulk work.

A bulk write builds thousands of container objects (memories, history
entries, events, index points) that all live until the batch ends and are
then freed by reference counting. Collections that run in the middle of the
batch find them alive and promote them to the oldest generation, and once
enough have been promoted CPython runs a *full* collection over every
object of the process. With a large caller-side working set that was a
fifth of bulk-store time. ``paused()`` turns the collector off for the
duration of such a batch (nothing it could collect is created there: the
batch's objects hold no reference cycles) and back on afterwards.

Pauses nest and may overlap across threads: the collector is switched off
by the first and back on by the last, and only if it was on to begin with
(an application that turned it off keeps it off).

``freeze_startup()`` is for long-running processes (``soma serve``'s
workers, ``soma worker``) once they have started: everything built until
then (modules, the app, the backends) lives as long as the process, yet a
full collection walked all of it again, 50-60 ms for an API worker, during
which no request was answered. Frozen objects are never examined again.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["freeze_startup", "paused"]

_lock = threading.Lock()
_state = {"depth": 0, "was_enabled": False}


@contextmanager
def paused(enabled: bool = True) -> Iterator[None]:
    """Run the block with the cyclic collector off (a no-op when ``enabled`` is False)."""
    if not enabled:
        yield
        return
    with _lock:
        if _state["depth"] == 0:
            _state["was_enabled"] = gc.isenabled()
            gc.disable()
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0 and _state["was_enabled"]:
                gc.enable()


def freeze_startup() -> int:
    """Collect once, then move every object that survived into the permanent
    generation (``gc.freeze``), so later collections skip what a process
    built at startup; the count of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
