"""The worker's declared behaviour on in-process backends: idempotent
handling, retries with backoff, poison isolation and dead letters, commit
after work, drain. The broker side is an in-memory ``IEventConsumer``
(the Kafka adapter itself runs in tests/integration/test_events_*.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from somafractalmemory.adapters.memory.bus import InProcessEventBus
from somafractalmemory.core import SomaFractalMemoryEnterprise
from somafractalmemory.errors import BackendUnavailable
from somafractalmemory.eventing.handler import HandleResult, IndexingHandler
from somafractalmemory.eventing.metrics import PipelineMetrics
from somafractalmemory.eventing.worker import EventWorker, WorkerOptions
from somafractalmemory.factory import create_backends
from somafractalmemory.interfaces.messaging import BrokerMessage, OutgoingMessage
from somafractalmemory.models import MemoryEvent
from somafractalmemory.services.events import EventEmitter


class Topic:
    """Messages of one partition, consumed in order, with committed offsets."""

    name = "memory"

    def __init__(self, values: Sequence[bytes]) -> None:
        self.messages = [BrokerMessage("t", 0, i, None, v) for i, v in enumerate(values)]
        self.position = 0
        self.commits: list[int] = []
        self.closed = False

    def poll(self, max_messages: int, timeout: float) -> list[BrokerMessage]:
        batch = self.messages[self.position : self.position + max_messages]
        self.position += len(batch)
        return batch

    def commit(self, messages: Sequence[BrokerMessage]) -> None:
        self.commits.append(max(m.offset for m in messages) + 1)

    def assigned(self) -> bool:
        return True

    def lag(self) -> int:
        return len(self.messages) - self.position

    def close(self) -> None:
        self.closed = True


class DeadLetters:
    name = "memory"

    def __init__(self) -> None:
        self.sent: list[tuple[str, OutgoingMessage]] = []

    def send(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        self.sent.extend((topic, m) for m in messages)

    def close(self) -> None: ...


@pytest.fixture
def memory() -> SomaFractalMemoryEnterprise:
    backends = create_backends("test", {"embeddings": {"model": "hash", "dim": 16}})
    backends.options.index_synchronously = False  # as in the evented modes: workers index
    return SomaFractalMemoryEnterprise("w", backends)


EMIT = EventEmitter(InProcessEventBus())  # builds events as the evented modes do (TEST mode has none)


def _events(memory: SomaFractalMemoryEnterprise, n: int) -> list[MemoryEvent]:
    stored = [memory.store_memory((i,), {"text": f"memo {i}"}) for i in range(n)]
    return EMIT.for_stored(stored)


def _handler(memory: SomaFractalMemoryEnterprise) -> IndexingHandler:
    return IndexingHandler(memory.backends.kv, memory.indexer, memory.backends.vectors)


def test_handling_is_idempotent_and_follows_the_store(memory: SomaFractalMemoryEnterprise) -> None:
    events = _events(memory, 5)
    handle = _handler(memory)
    assert memory.memory_stats()["vectors"] == 0
    assert handle(events) == HandleResult(indexed=5)
    assert handle(events) == HandleResult(indexed=0)  # a replay changes nothing
    assert handle(list(reversed(events)) * 2) == HandleResult(indexed=0)
    # deleted, then re-created at the same coordinate (version 1 again): the delete forces a re-index
    memory.delete((0,))
    again = memory.store_memory((0,), {"text": "a different memo"})
    gone = EMIT.for_deleted([again])
    assert handle([*gone, *EMIT.for_stored([again])]) == HandleResult(indexed=1)
    assert memory.recall("a different memo", top_k=1)[0]["text"] == "a different memo"
    memory.delete((1,))
    assert handle(events[1:2]) == HandleResult(unindexed=1)  # a late create of a deleted memory
    assert memory.memory_stats()["vectors"] == 4


def _worker(
    topic: Topic, handler: Any, dead: DeadLetters, **options: Any
) -> tuple[EventWorker, PipelineMetrics]:
    metrics = PipelineMetrics()
    options.setdefault("burst", True)
    opts = WorkerOptions(backoff=0.001, backoff_max=0.005, **options)
    return EventWorker(topic, handler, dead, "t.dlq", metrics, opts), metrics


def test_retries_isolation_dead_letters_and_commits(memory: SomaFractalMemoryEnterprise) -> None:
    events = _events(memory, 6)
    values = [json.dumps(e.to_dict()).encode() for e in events]
    values.insert(2, b"{broken")
    topic, dead = Topic(values), DeadLetters()
    real = _handler(memory)
    calls = {"n": 0}

    def flaky(batch: Sequence[MemoryEvent]) -> HandleResult:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise BackendUnavailable("PostgreSQL", "restarting")  # waited out, never dead-lettered
        if any(e.memory_id == events[4].memory_id for e in batch):
            raise ValueError("poison")  # fails every time: isolated, then dead-lettered
        return real(batch)

    worker, metrics = _worker(topic, flaky, dead, batch_size=4, max_retries=2)
    worker.run()
    assert topic.closed and topic.commits == [4, 7]
    assert [m.value for _, m in dead.sent] == [b"{broken", values[5]]
    assert dead.sent[0][1].headers["error"].startswith(b"malformed")
    assert dead.sent[1][1].headers["error"].startswith(b"failed after 2 retries")
    assert {topic_name for topic_name, _ in dead.sent} == {"t.dlq"}
    assert metrics.value("soma_worker_memories_indexed_total") == 5
    assert metrics.total("soma_worker_events_dead_lettered_total") == 2
    assert metrics.total("soma_worker_events_processed_total") == 5
    assert metrics.value("soma_worker_events_failed_total") >= 5
    assert metrics.value("soma_worker_batch_duration_seconds_count") == 2


def test_stop_drains_the_batch_in_hand(memory: SomaFractalMemoryEnterprise) -> None:
    events = _events(memory, 6)
    topic, dead = Topic([json.dumps(e.to_dict()).encode() for e in events]), DeadLetters()
    real = _handler(memory)
    worker: EventWorker

    def stop_after_first(batch: Sequence[MemoryEvent]) -> HandleResult:
        worker.stop()  # SIGTERM arrives mid-batch
        return real(batch)

    worker, _ = _worker(topic, stop_after_first, dead, batch_size=4, burst=False)
    worker.run()
    assert topic.commits == [4], "the batch in hand is finished and committed, no new one is taken"
    assert topic.closed and memory.memory_stats()["vectors"] == 4
