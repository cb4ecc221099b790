"""``gcpause.paused``: the collector is off inside, back to its prior state after."""

from __future__ import annotations

import gc
import threading

import pytest

from somafractalmemory import gcpause
from somafractalmemory.errors import InvalidInput
from somafractalmemory.factory import create_memory_system

from ..threads import run_together


@pytest.fixture(autouse=True)
def _collector_on() -> None:
    gc.enable()


def test_nested_pauses_switch_the_collector_back_on_once() -> None:
    with gcpause.paused():
        assert not gc.isenabled()
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_application_stays_off() -> None:
    gc.disable()
    with gcpause.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_disabled_pause_does_nothing() -> None:
    with gcpause.paused(False):
        assert gc.isenabled()


def test_overlapping_pauses_in_threads_end_with_the_collector_on() -> None:
    inside = threading.Barrier(2)

    def work() -> None:
        with gcpause.paused():
            inside.wait(5)
            assert not gc.isenabled()
            inside.wait(5)

    assert run_together(lambda _: work(), range(2)) == []  # the asserts inside count too
    assert gc.isenabled()


def test_bulk_store_pauses_and_restores_even_when_it_fails() -> None:
    memory = create_memory_system("test", "gcp")
    seen: list[bool] = []
    memory.set_hook("before_store", lambda **_: seen.append(gc.isenabled()))
    memory.store_memories_bulk([((i,), {"text": f"m{i}"}) for i in range(150)])
    assert seen and not any(seen) and gc.isenabled()
    with pytest.raises(InvalidInput):
        memory.store_memories_bulk([((i,), {"text": "x"}) for i in range(149)] + [((1,), "not an object")])
    assert gc.isenabled()
    memory.store_memories_bulk([((1,), {"text": "small batch"})])
    assert seen[-1] is True  # small batches leave the collector alone
    memory.close()


def test_freeze_startup_keeps_what_was_built_out_of_later_collections() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector could free it

    built = Node()
    gc.unfreeze()
    try:
        frozen = gcpause.freeze_startup()
        assert frozen == gc.get_freeze_count() > 0
        assert not any(o is built for o in gc.get_objects())  # no generation holds it now
        later = Node()
        assert any(o is later for o in gc.get_objects())  # objects made afterwards are collected as usual
    finally:
        gc.unfreeze()
