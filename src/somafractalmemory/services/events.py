"""Builds the events of writes and hands them to the event bus.

A write calls ``for_stored``/``for_deleted``/``for_links`` *before* it
touches the store (events are validated against the schema there), passes
``outbox(events)`` to the store call, and calls ``published(events)`` after
it. With a transactional bus (the PostgreSQL outbox) the store commits the
events with the write and ``published`` does nothing; with any other bus
``outbox`` is empty and ``published`` publishes. Either way the events have
the same shape.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ..eventing.schema import prepare, validate_event
from ..interfaces.storage import IEventBus
from ..models import Link, Memory, MemoryEvent, now

__all__ = ["EventEmitter"]

_NONE: tuple[MemoryEvent, ...] = ()


class EventEmitter:
    """Turns memories and links into ``MemoryEvent``s and publishes them."""

    def __init__(self, bus: IEventBus, validate: bool = True) -> None:
        self.bus = bus
        self.validate = validate
        if validate and self.enabled:
            prepare()  # compiled once per process, at start, not in the first write

    @property
    def enabled(self) -> bool:
        """False when the bus discards everything (events off): nothing is built."""
        return self.bus.name != "null"

    @property
    def transactional(self) -> bool:
        """True when the store writes the events in its own transaction (outbox)."""
        return bool(getattr(self.bus, "transactional", False))

    # -- building -------------------------------------------------------------
    def _checked(self, events: list[MemoryEvent]) -> list[MemoryEvent]:
        if self.validate:
            for event in events:
                validate_event(event.to_dict())
        return events

    def for_stored(self, memories: Sequence[Memory]) -> list[MemoryEvent]:
        if not self.enabled:
            return []
        return self._checked(
            [
                MemoryEvent(
                    type="memory.created" if m.version == 1 else "memory.updated",
                    namespace=m.namespace,
                    memory_id=m.id,
                    coordinate=m.coordinate,
                    timestamp=m.updated_at,
                    payload=m.payload,
                    memory_type=m.memory_type.value,
                    version=m.version,
                )
                for m in memories
            ]
        )

    def for_deleted(self, memories: Sequence[Memory], at: float | None = None) -> list[MemoryEvent]:
        if not self.enabled:
            return []
        when = now() if at is None else at
        return self._checked(
            [
                MemoryEvent(
                    type="memory.deleted",
                    namespace=m.namespace,
                    memory_id=m.id,
                    coordinate=m.coordinate,
                    timestamp=when,
                    memory_type=m.memory_type.value,
                )
                for m in memories
            ]
        )

    def for_links(self, links: Sequence[Link], created: bool = True) -> list[MemoryEvent]:
        if not self.enabled:
            return []
        at = now()
        return self._checked(
            [
                MemoryEvent(
                    type="link.created" if created else "link.deleted",
                    namespace=link.namespace,
                    memory_id=link.from_id,
                    coordinate=link.from_coord,
                    timestamp=at,
                    link={
                        "to_id": link.to_id,
                        "to_coord": list(link.to_coord),
                        "type": link.link_type,
                        "weight": link.weight,
                        "metadata": link.metadata,
                    },
                )
                for link in links
            ]
        )

    # -- handing over -----------------------------------------------------------
    def outbox(self, events: Sequence[MemoryEvent]) -> Sequence[MemoryEvent]:
        """What the store should commit with the write: the events, or nothing."""
        return events if self.transactional else _NONE

    def published(self, events: Sequence[MemoryEvent], only_ids: Collection[str] | None = None) -> None:
        """After the write: publish the events (those of ``only_ids``, when
        given) unless the store already committed them to the outbox."""
        if self.transactional:
            return
        chosen = [e for e in events if only_ids is None or e.memory_id in only_ids]
        if chosen:
            self.bus.publish(chosen)

    # -- one-call forms: events of a write already done, published on their own ----
    def _publish(self, events: list[MemoryEvent]) -> None:
        if events:
            self.bus.publish(events)

    def stored(self, memories: Sequence[Memory]) -> None:
        self._publish(self.for_stored(memories))

    def deleted(self, memories: Sequence[Memory]) -> None:
        self._publish(self.for_deleted(memories))

    def linked(self, links: Sequence[Link], created: bool = True) -> None:
        self._publish(self.for_links(links, created))
