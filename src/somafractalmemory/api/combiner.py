"""``WriteCombiner``: ``/store`` requests that arrive while others are written go in one batch.

A store over network backends is a read and a guarded write in PostgreSQL,
two cache invalidations in Redis, and a hop to a thread and back. Under
load, stores of one namespace arrive in an API process while others are
being written: they wait in a queue, and when the write in progress ends,
all that are waiting (up to ``max_batch``) are stored as one batch
(``store_many``: one read, one write, one hop for all of them). A store
that finds no write in progress is written at once, alone, as before.

* At most ``writers`` batches of a namespace are written at a time
  (``SOMA_API_STORE_WRITERS``, default 2): two overlap one batch's round
  trips with another's work, and a queue still forms under load; more
  writers and it rarely does. 0 turns combining off (each store in a
  thread of its own).
* No two stores of one memory are written at once (in one batch or in
  two): the later one waits for the next batch, so each store is a version
  of its own, in the order the requests came.
* A batch is written whole or not at all. If it fails with
  ``BackendUnavailable`` every store of it gets that error; any other error
  (a hook refusing one payload, say) and each store is written again alone,
  so an error reaches only the request it belongs to.
* Bad input is refused before anything is queued, naming the field.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendUnavailable
from ..models import Coordinate, Memory, MemoryType, canonical_coordinate, memory_id, validate_payload

__all__ = ["MAX_BATCH", "Item", "WriteCombiner"]

#: stores a batch takes at most
MAX_BATCH = 64

Item = tuple[Coordinate, dict[str, Any], MemoryType]
#: writes one batch (in a thread) and returns its memories in the batch's order
StoreMany = Callable[[list[Item]], Awaitable[Sequence[Memory]]]


@dataclass
class _Store:
    item: Item
    id: str
    done: asyncio.Future[Memory] = field(repr=False)


class WriteCombiner:
    """The stores of one namespace in one API process, combined while others are written."""

    def __init__(
        self,
        namespace: str,
        store_many: StoreMany,
        writers: int = 1,
        max_batch: int = MAX_BATCH,
        on_batch: Callable[[int], object] | None = None,
    ) -> None:
        if writers < 1 or max_batch < 1:
            raise ValueError("writers and max_batch must be at least 1")
        self.namespace = namespace
        self._store_many = store_many
        self.writers = writers
        self.max_batch = max_batch
        self._on_batch = on_batch  # told each written batch's size (a metric)
        self._waiting: deque[_Store] = deque()
        self._running = 0  # writers at work
        self._writing: set[str] = set()  # ids of the batches being written
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # batches written whole
        self.combined = 0  # stores written in them

    async def store(self, coordinate: Any, payload: Any, memory_type: Any) -> Memory:
        """Store one memory; returns it once written."""
        coord = canonical_coordinate(coordinate)
        item = (coord, validate_payload(payload), MemoryType.parse(memory_type))
        loop = asyncio.get_running_loop()
        pending = _Store(item, memory_id(self.namespace, coord), loop.create_future())
        self._waiting.append(pending)
        if self._running < self.writers:
            self._running += 1
            task = loop.create_task(self._write())
            self._tasks.add(task)  # referenced until done: the loop keeps only a weak reference
            task.add_done_callback(self._tasks.discard)
        return await pending.done

    def _take(self) -> list[_Store]:
        """The next batch: waiting stores in arrival order, one per memory,
        none of a memory another batch is writing now (it comes next time)."""
        batch: list[_Store] = []
        ids: set[str] = set()
        later: list[_Store] = []
        while self._waiting and len(batch) < self.max_batch:
            pending = self._waiting.popleft()
            if pending.id in ids or pending.id in self._writing:
                later.append(pending)
            else:
                ids.add(pending.id)
                batch.append(pending)
        self._waiting.extendleft(reversed(later))
        self._writing |= ids
        return batch

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                if not batch:  # all that waits is being written: the writer at it goes on
                    break
                try:
                    await self._write_batch(batch)
                except asyncio.CancelledError:  # the server stops: no request waits for ever
                    for pending in batch:
                        pending.done.cancel()
                    raise
                except Exception as exc:  # a bug: every store of the batch gets the error
                    for pending in batch:
                        _settle(pending, exc)
                finally:
                    self._writing -= {pending.id for pending in batch}
        finally:
            self._running -= 1

    async def _write_batch(self, batch: list[_Store]) -> None:
        try:
            stored = await self._store_many([p.item for p in batch])
        except BackendUnavailable as exc:  # the same for every store of it
            for pending in batch:
                _settle(pending, exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
            else:
                await self._each_alone(batch)
            return
        if len(stored) != len(batch):
            raise RuntimeError(f"a batch of {len(batch)} stores returned {len(stored)} memories")
        self.batches += 1
        self.combined += len(batch)
        if self._on_batch is not None:
            self._on_batch(len(batch))
        for pending, memory in zip(batch, stored, strict=True):
            _settle(pending, memory)

    async def _each_alone(self, batch: list[_Store]) -> None:
        for pending in batch:
            try:
                (memory,) = await self._store_many([pending.item])
            except Exception as exc:
                _settle(pending, exc)
            else:
                _settle(pending, memory)


def _settle(pending: _Store, outcome: Memory | Exception) -> None:
    if pending.done.done():  # its request was cancelled (the client left): the write stands
        return
    if isinstance(outcome, Exception):
        pending.done.set_exception(outcome)
    else:
        pending.done.set_result(outcome)
