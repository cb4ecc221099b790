"""Running one function in several threads at once, for concurrency tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

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


def store_one_memory_from_both(systems: Sequence[Any], per_writer: int, writers: int = 4) -> int:
    """``writers`` threads store the memory at ``(1, 2)`` ``per_writer`` times
    each, through ``systems`` in turn (memory systems standing for processes:
    each has write locks of its own), all at once; asserts that no store
    raised and checks every version landed once: the number of stores."""
    coordinate = (1.0, 2.0)

    def write(k: int) -> None:
        for i in range(per_writer):
            systems[k % len(systems)].store_memory(coordinate, {"text": f"writer {k} store {i}"})

    assert run_together(write, range(writers)) == []
    total = writers * per_writer
    assert systems[0].get_memory(coordinate).version == total
    assert sorted(h.version for h in systems[-1].get_versions(coordinate)) == list(range(1, total + 1))
    return total
