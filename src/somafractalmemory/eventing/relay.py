"""``OutboxRelay``: moves committed events from the outbox to Kafka.

Each round claims up to ``batch_size`` unsent outbox rows (``FOR UPDATE
SKIP LOCKED``, oldest first), publishes them to the events topic with the
idempotent producer (key = memory id, so one memory's events stay in one
partition, in order), waits for the broker's acknowledgement, and only then
marks them sent, in the same transaction as the claim. If the broker is
down, the round fails, the rows stay unsent, and the relay retries with
exponential backoff: writes never fail and never wait for Kafka. Delivery
is at least once (a crash between the broker's ack and the commit re-sends
a batch); the workers' idempotent handling makes duplicates harmless.

Outbox lag (unsent rows, age of the oldest) is refreshed into the metrics
every ``lag_interval`` seconds; sent rows older than ``retention_seconds``
are purged every ``purge_interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from ..errors import BackendUnavailable, SFMError
from ..interfaces.messaging import IEventProducer, IOutbox, OutboxLag, OutboxRecord, OutgoingMessage
from .metrics import PipelineMetrics

__all__ = ["OutboxRelay"]
log = logging.getLogger(__name__)

_HEADERS = {"content-type": b"application/json"}


class OutboxRelay:
    def __init__(
        self,
        outbox: IOutbox,
        producer: IEventProducer,
        topic: str,
        metrics: PipelineMetrics | None = None,
        *,
        batch_size: int = 2000,
        idle_sleep: float = 0.02,
        backoff: float = 0.2,
        backoff_max: float = 10.0,
        lag_interval: float = 1.0,
        retention_seconds: float = 3600.0,
        purge_interval: float = 60.0,
    ) -> None:
        self.outbox = outbox
        self.producer = producer
        self.topic = topic
        self.metrics = metrics or PipelineMetrics()
        self.batch_size = batch_size
        self.idle_sleep = idle_sleep
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.lag_interval = lag_interval
        self.retention_seconds = retention_seconds
        self.purge_interval = purge_interval
        self._stop = threading.Event()
        self._failures = 0
        self._lag_at = 0.0
        self._purged_at = time.monotonic()

    def _send(self, records: Sequence[OutboxRecord]) -> None:
        messages = [OutgoingMessage(r.key.encode(), r.value, _HEADERS) for r in records]
        self.producer.send(self.topic, messages)

    def run_once(self) -> int:
        """One round: publish up to ``batch_size`` events; return how many."""
        sent = self.outbox.relay(self.batch_size, self._send)
        if sent:
            self.metrics.published.inc(sent)
        return sent

    def lag(self) -> OutboxLag:
        """Refresh and return the outbox lag."""
        lag = self.outbox.lag()
        self.metrics.outbox_unsent.set(lag.unsent)
        self.metrics.outbox_oldest.set(lag.oldest_age_seconds)
        return lag

    def caught_up(self) -> bool:
        """True when nothing waits in the outbox (for burst mode)."""
        try:
            return self.lag().unsent == 0
        except SFMError:
            return False

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Relay until ``stop()``; every failure is logged and retried."""
        while not self._stop.is_set():
            try:
                sent = self.run_once()
                if self._failures:
                    log.info("outbox relay recovered after %d failed rounds", self._failures)
                self._failures = 0
            except SFMError as exc:
                self._failures += 1
                self.metrics.publish_failures.inc()
                if self._failures == 1 or self._failures % 10 == 0:
                    log.warning("outbox relay: %s (round %d failed; retrying)", exc, self._failures)
                delay = min(self.backoff_max, self.backoff * 2 ** (self._failures - 1))
                self._stop.wait(delay)
                continue
            self._housekeeping()
            if sent < self.batch_size:
                self._stop.wait(self.idle_sleep)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        try:
            if now - self._lag_at >= self.lag_interval:
                self._lag_at = now
                self.lag()
            if now - self._purged_at >= self.purge_interval:
                self._purged_at = now
                purged = self.outbox.purge_sent(self.retention_seconds)
                if purged:
                    log.info("purged %d sent outbox rows", purged)
        except BackendUnavailable as exc:
            log.warning("outbox housekeeping skipped: %s", exc)
