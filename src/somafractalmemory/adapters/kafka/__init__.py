"""Kafka adapters (``pip install 'somafractalmemory[kafka]'``): every import of
confluent-kafka lives in this package.

* ``KafkaEventProducer``: idempotent producer used by the outbox relay and
  for dead letters (``IEventProducer``);
* ``KafkaEventConsumer``: consumer-group member with manual commits
  (``IEventConsumer``);
* ``KafkaAdmin``: creates ``memory.events`` and ``memory.events.dlq``,
  describes the cluster.

Importing it without confluent-kafka raises ``MissingDependency`` (an
``ImportError``) naming the extra.
"""

from __future__ import annotations

from .admin import KafkaAdmin
from .consumer import KafkaEventConsumer
from .producer import KafkaEventProducer

__all__ = ["KafkaAdmin", "KafkaEventConsumer", "KafkaEventProducer"]
