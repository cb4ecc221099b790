"""``EventWorker``: a declared consumer of ``memory.events``.

What it promises (docs/EVENTS.md):

* **Idempotent work.** The handler (``eventing.handler``) reads current
  state and indexes only what is out of date, so a replayed batch is harmless.
* **Commit after work.** A batch's offsets are committed (synchronously,
  ``enable.auto.commit`` off) only after its work is done and made durable
  (``flush``) and its dead letters are acknowledged: a crash replays at
  most the batch in hand.
* **Retries with backoff.** A backend that does not answer
  (``BackendUnavailable``) is retried with exponential backoff for as long
  as it takes: the worker pauses rather than drop work. Any other failure
  is retried ``max_retries`` times; then the batch is split and each event
  retried on its own, so one poison event cannot block the others.
* **Dead letters.** A message that is not JSON, breaks the event schema, or
  keeps failing goes to ``<topic>.dlq`` with an ``error`` header, and the
  worker goes on.
* **Graceful drain.** ``stop()`` (SIGTERM) lets the batch in hand finish
  and commit, then the consumer leaves its group.
* **Burst mode.** ``burst=True`` stops once caught up (partitions
  assigned, no lag, and ``idle_check`` true): for tests and backfills.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..errors import BackendUnavailable, InvalidInput
from ..interfaces.messaging import BrokerMessage, IEventConsumer, IEventProducer, OutgoingMessage
from ..models import MemoryEvent
from .handler import HandleResult
from .metrics import PipelineMetrics
from .schema import validate_event

__all__ = ["EventWorker", "WorkerOptions", "decode"]
log = logging.getLogger(__name__)

Handler = Callable[[Sequence[MemoryEvent]], HandleResult]
_T = TypeVar("_T")


class _Stopping(Exception):
    """Stop requested while waiting for a backend: leave the batch uncommitted."""


@dataclass
class WorkerOptions:
    batch_size: int = 500
    poll_timeout: float = 0.05
    max_retries: int = 3
    backoff: float = 0.1
    backoff_max: float = 5.0
    burst: bool = False
    lag_interval: float = 2.0


def decode(message: BrokerMessage) -> MemoryEvent:
    """The event in a message; ``InvalidInput`` if it is not a valid event."""
    try:
        data = json.loads(message.value or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("event", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("event", "must be a JSON object")
    validate_event(data)
    return MemoryEvent(
        type=data["type"],
        namespace=data["namespace"],
        memory_id=data["memory_id"],
        coordinate=tuple(data["coordinate"]),
        timestamp=float(data["timestamp"]),
        payload=data.get("payload"),
        memory_type=data.get("memory_type"),
        version=data.get("version"),
        link=data.get("link"),
        event_id=data["event_id"],
        schema_version=int(data["schema_version"]),
    )


class EventWorker:
    def __init__(
        self,
        consumer: IEventConsumer,
        handler: Handler,
        dead_letters: IEventProducer,
        dlq_topic: str,
        metrics: PipelineMetrics,
        options: WorkerOptions | None = None,
        flush: Callable[[], None] | None = None,
        idle_check: Callable[[], bool] | None = None,
    ) -> None:
        self.consumer = consumer
        self.handler = handler
        self.dead_letters = dead_letters
        self.dlq_topic = dlq_topic
        self.metrics = metrics
        self.options = options or WorkerOptions()
        self.flush = flush or (lambda: None)
        self.idle_check = idle_check
        self._stop = threading.Event()
        self._lag_at = 0.0

    def stop(self) -> None:
        """Finish the batch in hand, commit it, then leave (graceful drain)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Consume until ``stop()`` (or, in burst mode, until caught up)."""
        try:
            while not self._stop.is_set():
                messages = self._retrying(
                    lambda: self.consumer.poll(self.options.batch_size, self.options.poll_timeout)
                )
                if messages:
                    self.process(messages)
                elif self.options.burst and self._caught_up():
                    log.info("burst mode: caught up, stopping")
                    break
                self._update_lag()
        except _Stopping:
            log.info("stopped while waiting for a backend; the batch in hand will be redelivered")
        finally:
            self.consumer.close()

    # -- one batch ----------------------------------------------------------------
    def process(self, messages: Sequence[BrokerMessage]) -> None:
        started = time.perf_counter()
        good: list[tuple[BrokerMessage, MemoryEvent]] = []
        dead: list[tuple[BrokerMessage, str]] = []
        for message in messages:
            try:
                good.append((message, decode(message)))
            except InvalidInput as exc:
                dead.append((message, f"malformed: {exc}"))
        if good:
            try:
                self._handle([e for _, e in good])
            except _Stopping:
                raise
            except Exception as exc:  # poison somewhere in the batch: isolate it
                log.warning("batch of %d failed (%s); retrying event by event", len(good), exc)
                for message, event in good:
                    try:
                        self._handle([event])
                    except _Stopping:
                        raise
                    except Exception as one:
                        dead.append((message, f"failed after {self.options.max_retries} retries: {one}"))
        if dead:
            self._retrying(lambda: self._dead_letter(dead))
        self._retrying(self.flush)
        self._commit(messages)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _commit(self, messages: Sequence[BrokerMessage]) -> None:
        """Commit the batch; if the group will not take it (a rebalance, a
        broker away), go on: whoever owns the partition replays it, harmlessly."""
        for attempt in range(1, 4):
            try:
                self.consumer.commit(messages)
                return
            except BackendUnavailable as exc:
                if attempt == 3 or self._stop.is_set():
                    log.warning("offsets not committed (the batch may be replayed): %s", exc)
                    return
                self._sleep(self._delay(attempt))

    def _handle(self, events: Sequence[MemoryEvent]) -> None:
        attempts = 0
        while True:
            try:
                result = self._retrying(lambda: self.handler(events))
                break
            except _Stopping:
                raise
            except Exception:
                attempts += 1
                self.metrics.failed.inc()
                if attempts > self.options.max_retries:
                    raise
                self._sleep(self._delay(attempts))
        now = time.time()
        for event in events:
            self.metrics.processed.labels(event.type).inc()
            self.metrics.event_age.observe(max(0.0, now - event.timestamp))
        self.metrics.indexed.inc(result.indexed)
        self.metrics.unindexed.inc(result.unindexed)

    def _dead_letter(self, dead: Sequence[tuple[BrokerMessage, str]]) -> None:
        out = [
            OutgoingMessage(
                m.key,
                m.value or b"",
                {
                    **m.headers,
                    "error": reason.encode()[:1000],
                    "source": f"{m.topic}/{m.partition}/{m.offset}".encode(),
                },
            )
            for m, reason in dead
        ]
        self.dead_letters.send(self.dlq_topic, out)
        for m, reason in dead:
            log.warning("dead-lettered %s/%d/%d: %s", m.topic, m.partition, m.offset, reason)
            self.metrics.dead_lettered.labels(reason.split(":", 1)[0]).inc()

    # -- retries, burst, lag -----------------------------------------------------------
    def _retrying(self, call: Callable[[], _T]) -> _T:
        """``call()``, retried with backoff while a backend is unavailable."""
        attempts = 0
        while True:
            try:
                return call()
            except BackendUnavailable as exc:
                attempts += 1
                self.metrics.failed.inc()
                if self._stop.is_set():
                    raise _Stopping() from exc
                if attempts == 1 or attempts % 20 == 0:
                    log.warning("backend unavailable (attempt %d), retrying: %s", attempts, exc)
                self._sleep(self._delay(attempts))

    def _delay(self, attempt: int) -> float:
        return float(min(self.options.backoff_max, self.options.backoff * 2 ** (attempt - 1)))

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _caught_up(self) -> bool:
        if not self.consumer.assigned():
            return False
        if self.idle_check is not None and not self.idle_check():
            return False
        return self._retrying(self.consumer.lag) == 0

    def _update_lag(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._lag_at >= self.options.lag_interval:
            self._lag_at = now
            with contextlib.suppress(BackendUnavailable):
                self.metrics.lag.set(self.consumer.lag())
