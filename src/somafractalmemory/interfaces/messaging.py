"""The ports of the event pipeline: the outbox, the broker producer and consumer.

``IOutbox`` is the store side (unsent events committed with their writes);
``IEventProducer`` and ``IEventConsumer`` are the broker side (Kafka in
``adapters/kafka``). The relay (``eventing.relay``) moves records from the
first to the second; workers (``eventing.worker``) consume them. Like every
port, a backend that cannot be reached raises ``errors.BackendUnavailable``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "BrokerMessage",
    "IEventConsumer",
    "IEventProducer",
    "IOutbox",
    "OutboxLag",
    "OutboxRecord",
    "OutgoingMessage",
]


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One unsent event: ``value`` is its JSON text, ``key`` its memory id."""

    id: int
    key: str
    value: bytes
    created_at: float


@dataclass(frozen=True, slots=True)
class OutboxLag:
    """Unsent events and the age in seconds of the oldest (0 when none)."""

    unsent: int
    oldest_age_seconds: float


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to publish: key (partitioning), value and headers."""

    key: bytes | None
    value: bytes
    headers: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BrokerMessage:
    """A consumed message and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes] = field(default_factory=dict)


@runtime_checkable
class IOutbox(Protocol):
    """Events committed together with their writes, waiting to be published."""

    name: str

    def relay(self, limit: int, send: Callable[[Sequence[OutboxRecord]], None]) -> int:
        """Claim up to ``limit`` unsent records, oldest first, so that other
        relays skip them; call ``send`` with them; mark them sent only if
        ``send`` returned. If it raises, they stay unsent and the error
        propagates. Returns how many were sent (0 when none were waiting)."""
        ...

    def lag(self) -> OutboxLag: ...

    def purge_sent(self, older_than_seconds: float) -> int:
        """Delete records sent more than ``older_than_seconds`` ago; return how many."""
        ...

    def health(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class IEventProducer(Protocol):
    """Publishes messages to a broker topic and waits until it has them."""

    name: str

    def send(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        """Publish every message (in order per key) and wait for the broker's
        acknowledgement of all of them; raise ``BackendUnavailable`` if any
        was not acknowledged in time (some may then be published twice later:
        delivery is at least once)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class IEventConsumer(Protocol):
    """A member of a consumer group with manual offset commits."""

    name: str

    def poll(self, max_messages: int, timeout: float) -> list[BrokerMessage]:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds."""
        ...

    def commit(self, messages: Sequence[BrokerMessage]) -> None:
        """Commit, synchronously, the offsets just past each partition's last
        message in ``messages``; raise ``BackendUnavailable`` on failure."""
        ...

    def assigned(self) -> bool:
        """True once the group has given this member its partitions (maybe none)."""
        ...

    def lag(self) -> int:
        """Messages in the assigned partitions not yet consumed by this member."""
        ...

    def close(self) -> None:
        """Leave the group (after the last commit); safe to call twice."""
        ...
