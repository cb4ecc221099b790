"""``KafkaEventProducer`` (``IEventProducer``): publish and wait for acknowledgement.

The producer is idempotent (``enable.idempotence``, ``acks=all``): the
broker drops the duplicates of its own retries, and messages of one key
keep their order. ``send`` waits until every message is acknowledged or
``delivery_timeout`` has passed (librdkafka's ``message.timeout.ms``), so
nothing is left queued when it returns or raises. After any failed send
the client is replaced (it may be wedged, e.g. by a broker that lost the
producer's state); the caller (the outbox relay) simply tries again later.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

from ...eventing.config import KafkaSettings
from ...interfaces.messaging import OutgoingMessage
from ._driver import KafkaError, KafkaException, ck, error_logger, unavailable

__all__ = ["KafkaEventProducer"]


class KafkaEventProducer:
    name = "kafka"

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        idempotent: bool = True,
        delivery_timeout: float = 10.0,
        linger_ms: int = 5,
    ) -> None:
        self.settings = settings
        self.delivery_timeout = delivery_timeout
        self._conf: dict[str, Any] = {
            **settings.client_config(),
            "enable.idempotence": idempotent,
            "acks": "all",
            "linger.ms": linger_ms,
            "message.timeout.ms": int(delivery_timeout * 1000),
            "compression.type": "lz4",
            "log_level": 2,  # errors arrive through error_cb, rate-limited
            "error_cb": error_logger("producer"),
        }
        self._lock = threading.Lock()
        self._producer: Any = ck.Producer(self._conf)
        self._closed = False

    def send(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        failures: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                failures.append(err)

        with self._lock:
            producer = self._producer
            try:
                for m in messages:
                    headers = list(m.headers.items()) or None
                    while True:
                        try:
                            producer.produce(topic, m.value, m.key, headers=headers, on_delivery=delivered)
                            break
                        except BufferError:  # local queue full: let deliveries drain
                            producer.poll(0.05)
                # poll in short steps (a bounded wait even when the client is wedged)
                deadline = time.monotonic() + self.delivery_timeout + 5.0
                while len(producer) and time.monotonic() < deadline:
                    producer.poll(0.05)
                left = len(producer)
            except KafkaException as exc:
                self._replace()
                raise unavailable(exc.args[0] if exc.args else exc) from None
            if left or failures:
                self._replace()
                reason = failures[0] if failures else f"{left} messages not acknowledged in time"
                raise unavailable(reason)

    def _replace(self) -> None:
        """After a failed send the client may hold late retries or a fatal
        state (e.g. a broker that lost the producer's id): drop whatever it
        still holds and start a new one, so the next send starts clean."""
        old, self._producer = self._producer, ck.Producer(self._conf)
        with contextlib.suppress(KafkaException, RuntimeError):
            old.purge(in_queue=True, in_flight=True)
            old.poll(0)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._producer.flush(1.0)  # sends are synchronous: nothing should be left
