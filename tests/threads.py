"""Running one function in several threads at once, for concurrency tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def run_together(target: Callable[[T], object], args: Iterable[T]) -> list[BaseException]:
    """Call ``target(arg)`` for every ``arg``, each in a thread of its own, all
    started before any is joined; return what the calls raised (an exception
    in a thread would otherwise only be printed)."""
    raised: list[BaseException] = []

    def call(arg: T) -> None:
        try:
            target(arg)
        except BaseException as exc:  # handed back to the test, which asserts on it
            raised.append(exc)

    threads = [threading.Thread(target=call, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return raised
