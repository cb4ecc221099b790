"""The one place that imports confluent-kafka, and what every client shares:
error translation and rate-limited logging of librdkafka's errors."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ...errors import BackendUnavailable, MissingDependency

try:
    import confluent_kafka as ck
    from confluent_kafka import KafkaError, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
except ImportError as exc:  # exercised by a test that hides the package
    raise MissingDependency("confluent-kafka", "kafka") from exc

__all__ = [
    "SERVICE",
    "SETTING",
    "AdminClient",
    "KafkaError",
    "KafkaException",
    "NewTopic",
    "TopicPartition",
    "ck",
    "error_logger",
    "unavailable",
]

SERVICE = "Kafka"
SETTING = "KAFKA_BOOTSTRAP_SERVERS"
log = logging.getLogger("somafractalmemory.kafka")


def unavailable(detail: Any) -> BackendUnavailable:
    """A broker problem as the library's exception."""
    text = detail.str() if isinstance(detail, KafkaError) else str(detail)
    return BackendUnavailable(SERVICE, text, SETTING)


def error_logger(client: str, every_seconds: float = 10.0) -> Any:
    """An ``error_cb`` that logs librdkafka errors at most once per
    ``every_seconds`` per error code (a down broker reports every retry)."""
    last: dict[int, float] = {}
    lock = threading.Lock()

    def on_error(err: KafkaError) -> None:
        now = time.monotonic()
        with lock:
            if now - last.get(err.code(), -every_seconds) < every_seconds and not err.fatal():
                return
            last[err.code()] = now
        log.warning("%s: %s", client, err.str())

    return on_error
