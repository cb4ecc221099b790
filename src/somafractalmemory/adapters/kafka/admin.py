"""``KafkaAdmin``: create the event topics and describe the cluster (``soma doctor``)."""

from __future__ import annotations

import time
from typing import Any

from ...eventing.config import KafkaSettings
from ._driver import AdminClient, KafkaError, KafkaException, NewTopic, error_logger, unavailable

__all__ = ["KafkaAdmin"]


class KafkaAdmin:
    name = "kafka"

    def __init__(self, settings: KafkaSettings, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        conf = {**settings.client_config(), "log_level": 2, "error_cb": error_logger("admin")}
        self._client: Any = AdminClient(conf)

    def ensure_topics(self, replication: int = 1) -> list[str]:
        """Create the events topic and its dead-letter topic when missing;
        return the names created."""
        s = self.settings
        wanted = [NewTopic(s.topic, s.partitions, replication), NewTopic(s.dlq_topic, 1, replication)]
        created: list[str] = []
        try:
            existing = set(self._client.list_topics(timeout=self.timeout).topics)
            missing = [t for t in wanted if t.topic not in existing]
            if not missing:
                return []
            for name, future in self._client.create_topics(missing, request_timeout=self.timeout).items():
                try:
                    future.result(self.timeout)
                    created.append(name)
                except KafkaException as exc:
                    err = exc.args[0] if exc.args else None
                    if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                        raise
        except KafkaException as exc:
            raise unavailable(exc.args[0] if exc.args else exc) from None
        return created

    def describe(self) -> dict[str, Any]:
        """``{"cluster_id", "brokers", "topics", "latency_ms"}`` (raises when unreachable)."""
        started = time.perf_counter()
        try:
            meta = self._client.list_topics(timeout=self.timeout)
        except KafkaException as exc:
            raise unavailable(exc.args[0] if exc.args else exc) from None
        return {
            "cluster_id": meta.cluster_id,
            "brokers": len(meta.brokers),
            "topics": sorted(t for t in meta.topics if not t.startswith("__")),
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }

    def partitions(self, topic: str) -> int:
        meta = self._client.list_topics(topic, timeout=self.timeout)
        found = meta.topics.get(topic)
        return 0 if found is None or found.error is not None else len(found.partitions)

    def health(self) -> None:
        self.describe()

    def close(self) -> None:
        return None
