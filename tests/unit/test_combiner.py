"""``api.combiner.WriteCombiner`` over a real TEST-mode core: what is combined, and what is not."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from somafractalmemory.api.combiner import Item, WriteCombiner
from somafractalmemory.core import SomaFractalMemoryEnterprise
from somafractalmemory.errors import BackendUnavailable, InvalidInput
from somafractalmemory.factory import create_memory_system
from somafractalmemory.models import Memory


@pytest.fixture
def core() -> Iterator[SomaFractalMemoryEnterprise]:
    memory = create_memory_system("test", "combined")
    yield memory
    memory.close()


class Writes:
    """The combiner's ``store_many``: the core's bulk store in a thread; each
    batch's size is recorded, and a batch waits while ``open`` is clear."""

    def __init__(self, core: SomaFractalMemoryEnterprise) -> None:
        self.core = core
        self.sizes: list[int] = []
        self.texts: list[list[str]] = []  # each batch's texts, in the order written
        self.open = threading.Event()
        self.open.set()
        self.fail: BaseException | None = None

    async def __call__(self, items: list[Item]) -> list[Memory]:
        self.sizes.append(len(items))
        self.texts.append([payload["text"] for _, payload, _ in items])
        await asyncio.to_thread(self.open.wait, 10)
        if self.fail is not None:
            raise self.fail
        return await asyncio.to_thread(self.core.store_memories_bulk, items)


async def until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def text(core: SomaFractalMemoryEnterprise, coord: tuple[float, ...]) -> Any:
    memory = core.get_memory(coord)
    return None if memory is None else memory.payload["text"]


def test_a_store_with_none_in_flight_is_written_at_once_alone(core: SomaFractalMemoryEnterprise) -> None:
    writes = Writes(core)
    combiner = WriteCombiner(core.namespace, writes)

    async def main() -> list[Memory]:
        return [await combiner.store((i, 0), {"text": f"m{i}"}, "episodic") for i in range(3)]

    stored = asyncio.run(main())
    assert writes.sizes == [1, 1, 1]
    assert [m.coordinate for m in stored] == [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)]
    assert [text(core, (i, 0)) for i in range(3)] == ["m0", "m1", "m2"]


Store = tuple[Any, Any, str]


def held(combiner: WriteCombiner, writes: Writes, stores: list[Store], meanwhile: Any = None) -> list[Any]:
    """The first store is written alone and held there; the others arrive
    meanwhile (then ``meanwhile(their tasks)``); then the write is let go.
    Each store's memory or error, in order."""

    async def main() -> list[Any]:
        writes.open.clear()
        first = asyncio.ensure_future(combiner.store(*stores[0]))
        await until(lambda: writes.sizes == [1])
        rest = [asyncio.ensure_future(combiner.store(*store)) for store in stores[1:]]
        await asyncio.sleep(0.01)
        assert writes.sizes == [1]  # one writer: the others wait
        if meanwhile is not None:
            meanwhile(rest)
        writes.open.set()
        return list(await asyncio.gather(first, *rest, return_exceptions=True))

    return asyncio.run(main())


def test_stores_arriving_during_a_write_go_in_one_batch(core: SomaFractalMemoryEnterprise) -> None:
    writes = Writes(core)
    sizes: list[int] = []
    combiner = WriteCombiner(core.namespace, writes, on_batch=sizes.append)
    stores: list[Store] = [((0, 0), {"text": "first"}, "episodic")]
    stores += [((i, 0), {"text": f"m{i}"}, "semantic") for i in range(1, 6)]
    stored = held(combiner, writes, stores)
    assert writes.sizes == [1, 5] and sizes == [1, 5]
    assert (combiner.batches, combiner.combined) == (2, 6)
    assert [m.coordinate[0] for m in stored] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert [m.memory_type.value for m in stored] == ["episodic"] + ["semantic"] * 5
    assert [text(core, (i, 0)) for i in range(6)] == ["first", "m1", "m2", "m3", "m4", "m5"]


def test_two_stores_of_one_memory_are_two_versions_in_request_order(
    core: SomaFractalMemoryEnterprise,
) -> None:
    writes = Writes(core)
    combiner = WriteCombiner(core.namespace, writes)
    stores: list[Store] = [
        ((9, 9), {"text": "v1"}, "episodic"),
        ((9, 9), {"text": "v2"}, "episodic"),
        ((1, 1), {"text": "other"}, "episodic"),
        ((9, 9), {"text": "v3"}, "episodic"),
    ]
    stored = held(combiner, writes, stores)
    assert writes.sizes == [1, 2, 1]  # v2 with "other"; v3 in a batch after v2's
    assert [(m.payload["text"], m.version) for m in stored] == [("v1", 1), ("v2", 2), ("other", 1), ("v3", 3)]
    assert text(core, (9, 9)) == "v3"
    assert sorted(h.version for h in core.get_versions((9, 9))) == [1, 2, 3]


def test_with_two_writers_a_memory_being_written_waits_for_the_next_batch(
    core: SomaFractalMemoryEnterprise,
) -> None:
    writes = Writes(core)
    combiner = WriteCombiner(core.namespace, writes, writers=2)

    async def main() -> list[Memory]:
        writes.open.clear()
        first = asyncio.ensure_future(combiner.store((5, 5), {"text": "v1"}, "episodic"))
        await until(lambda: writes.texts == [["v1"]])
        second = asyncio.ensure_future(combiner.store((5, 5), {"text": "v2"}, "episodic"))
        other = asyncio.ensure_future(combiner.store((6, 6), {"text": "other"}, "episodic"))
        await until(lambda: len(writes.texts) == 2)  # the second writer: not v2, which waits for v1
        await asyncio.sleep(0.01)
        assert writes.texts == [["v1"], ["other"]]
        writes.open.set()
        return list(await asyncio.gather(first, second, other))

    stored = asyncio.run(main())
    assert writes.texts == [["v1"], ["other"], ["v2"]]
    assert [(m.payload["text"], m.version) for m in stored] == [("v1", 1), ("v2", 2), ("other", 1)]
    assert text(core, (5, 5)) == "v2"


def test_an_error_of_one_store_reaches_only_its_request(core: SomaFractalMemoryEnterprise) -> None:
    def refuse(payload: dict[str, Any], **_: Any) -> None:
        if payload.get("text") == "refused":
            raise InvalidInput("payload.text", "refused by a hook")

    core.set_hook("before_store", refuse)
    writes = Writes(core)
    combiner = WriteCombiner(core.namespace, writes)
    texts = ["first", "fine", "refused", "also fine"]
    outcomes = held(combiner, writes, [((i, 1), {"text": t}, "episodic") for i, t in enumerate(texts)])
    assert writes.sizes == [1, 3, 1, 1, 1]  # the batch of 3 failed whole, then each alone
    assert isinstance(outcomes[2], InvalidInput) and outcomes[2].field == "payload.text"
    assert [o.payload["text"] for o in outcomes if isinstance(o, Memory)] == ["first", "fine", "also fine"]
    assert [text(core, (i, 1)) for i in range(4)] == ["first", "fine", None, "also fine"]


def test_an_unreachable_backend_fails_the_whole_batch_once(core: SomaFractalMemoryEnterprise) -> None:
    writes = Writes(core)
    combiner = WriteCombiner(core.namespace, writes)

    def down(_: Any) -> None:
        writes.fail = BackendUnavailable("PostgreSQL", "down for the test")

    outcomes = held(combiner, writes, [((i, 2), {"text": "x"}, "episodic") for i in range(4)], down)
    assert writes.sizes == [1, 3]  # no store tried again alone
    assert all(isinstance(o, BackendUnavailable) for o in outcomes)
    assert core.memory_stats()["total_memories"] == 0


def test_bad_input_is_refused_before_anything_is_queued(core: SomaFractalMemoryEnterprise) -> None:
    writes = Writes(core)
    combiner = WriteCombiner(core.namespace, writes)

    async def main(coord: Any, payload: Any, memory_type: Any) -> Memory:
        return await combiner.store(coord, payload, memory_type)

    with pytest.raises(InvalidInput) as bad_coord:
        asyncio.run(main((1, float("nan")), {"text": "x"}, "episodic"))
    with pytest.raises(InvalidInput) as bad_payload:
        asyncio.run(main((1, 2), "not an object", "episodic"))
    with pytest.raises(InvalidInput) as bad_type:
        asyncio.run(main((1, 2), {"text": "x"}, "dream"))
    assert (bad_coord.value.field, bad_payload.value.field, bad_type.value.field) == (
        "coordinate",
        "payload",
        "memory_type",
    )
    assert writes.sizes == []


def test_a_cancelled_request_does_not_undo_or_stop_the_batch(core: SomaFractalMemoryEnterprise) -> None:
    writes = Writes(core)
    combiner = WriteCombiner(core.namespace, writes)
    texts = ["first", "client left", "kept"]
    stores: list[Store] = [((i, 3), {"text": t}, "episodic") for i, t in enumerate(texts)]
    outcomes = held(combiner, writes, stores, lambda rest: rest[0].cancel())
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert [text(core, (i, 3)) for i in range(3)] == texts
    assert writes.sizes == [1, 2]


def test_writers_and_batch_size_must_be_positive(core: SomaFractalMemoryEnterprise) -> None:
    with pytest.raises(ValueError):
        WriteCombiner(core.namespace, Writes(core), writers=0)
    with pytest.raises(ValueError):
        WriteCombiner(core.namespace, Writes(core), max_batch=0)


def test_a_batch_takes_at_most_max_batch_stores(core: SomaFractalMemoryEnterprise) -> None:
    writes = Writes(core)
    combiner = WriteCombiner(core.namespace, writes, max_batch=3)
    held(combiner, writes, [((i, 4), {"text": "x"}, "episodic") for i in range(8)])
    assert writes.sizes == [1, 3, 3, 1]
