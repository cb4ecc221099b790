"""``KafkaEventConsumer`` (``IEventConsumer``): a consumer-group member that
commits only when told to.

``enable.auto.commit`` is off: the worker commits the offsets of a batch
after the batch's work is done, so a crash replays at most the batch in
hand (at-least-once). A group with no committed offset starts from the
earliest message. Rebalance callbacks run inside ``poll`` (between
batches), so a revoked partition never has uncommitted finished work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ...eventing.config import KafkaSettings
from ...interfaces.messaging import BrokerMessage
from ._driver import KafkaError, KafkaException, TopicPartition, ck, error_logger, unavailable

__all__ = ["KafkaEventConsumer"]
log = logging.getLogger("somafractalmemory.kafka")


class KafkaEventConsumer:
    name = "kafka"

    def __init__(
        self,
        settings: KafkaSettings,
        group: str,
        topics: Sequence[str] | None = None,
        *,
        max_poll_interval_ms: int = 300_000,
    ) -> None:
        conf: dict[str, Any] = {
            **settings.client_config(),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(100, settings.session_timeout_ms // 4),
            "max.poll.interval.ms": max_poll_interval_ms,
            "fetch.wait.max.ms": 50,  # low end-to-end lag when the topic is quiet
            # notice a topic that (re)appears, e.g. created after the workers started
            "topic.metadata.refresh.interval.ms": 5000,
            "log_level": 2,
            "error_cb": error_logger("consumer"),
        }
        self._consumer: Any = ck.Consumer(conf)
        self._assigned = False
        self._closed = False
        self._consumer.subscribe(
            list(topics or [settings.topic]), on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._assigned = True
        log.info("assigned %s", [f"{p.topic}[{p.partition}]" for p in partitions])

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        log.info("revoked %s", [f"{p.topic}[{p.partition}]" for p in partitions])

    def poll(self, max_messages: int, timeout: float) -> list[BrokerMessage]:
        # ``consume(n, timeout)`` waits until it has ``n`` messages or the
        # timeout is over: a quiet topic would hold every message the whole
        # timeout. Take what has arrived; if nothing, wait for the first
        # message only, then take what came with it.
        limit = max(1, max_messages)
        try:
            raw = self._consumer.consume(limit, 0)
            if not raw:
                raw = self._consumer.consume(1, timeout)
                if raw and limit > 1:
                    raw += self._consumer.consume(limit - 1, 0)
        except KafkaException as exc:
            raise unavailable(exc.args[0] if exc.args else exc) from None
        out: list[BrokerMessage] = []
        for m in raw:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise unavailable(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer: %s", err.str())
                continue
            headers = {k: (v or b"") for k, v in (m.headers() or [])}
            out.append(BrokerMessage(m.topic(), m.partition(), m.offset(), m.key(), m.value(), headers))
        return out

    def commit(self, messages: Sequence[BrokerMessage]) -> None:
        upto: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.topic, m.partition)
            upto[key] = max(upto.get(key, -1), m.offset + 1)
        if not upto:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in upto.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise unavailable(exc.args[0] if exc.args else exc) from None

    def assigned(self) -> bool:
        return self._assigned

    def lag(self) -> int:
        try:
            assignment = self._consumer.assignment()
            if not assignment:
                return 0
            # where nothing was consumed yet, the position is unknown: count from the
            # group's committed offset, else from the start of the partition
            at = {(tp.topic, tp.partition): tp.offset for tp in self._consumer.position(assignment)}
            unknown = [TopicPartition(t, p) for (t, p), offset in at.items() if offset < 0]
            if unknown:
                for tp in self._consumer.committed(unknown, timeout=5.0):
                    at[(tp.topic, tp.partition)] = tp.offset
            total = 0
            for (topic, partition), offset in at.items():
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=5.0, cached=False
                )
                total += max(0, high - (offset if offset >= 0 else low))
            return total
        except KafkaException as exc:
            raise unavailable(exc.args[0] if exc.args else exc) from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._consumer.close()
