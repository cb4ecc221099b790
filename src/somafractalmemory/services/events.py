"""Builds the events of writes and hands them to the event bus."""

from __future__ import annotations

from collections.abc import Sequence

from ..eventing.schema import validate_event
from ..interfaces.storage import IEventBus
from ..models import Link, Memory, MemoryEvent, now

__all__ = ["EventEmitter"]


class EventEmitter:
    """Turns memories and links into ``MemoryEvent``s and publishes them."""

    def __init__(self, bus: IEventBus, validate: bool = True) -> None:
        self.bus = bus
        self.validate = validate

    @property
    def enabled(self) -> bool:
        """False when the bus discards everything (events off): nothing is built."""
        return self.bus.name != "null"

    def _publish(self, events: list[MemoryEvent]) -> None:
        if not events:
            return
        if self.validate:
            for event in events:
                validate_event(event.to_dict())
        self.bus.publish(events)

    def stored(self, memories: Sequence[Memory]) -> None:
        if not self.enabled:
            return
        self._publish(
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

    def deleted(self, memories: Sequence[Memory]) -> None:
        if not self.enabled:
            return
        at = now()
        self._publish(
            [
                MemoryEvent(
                    type="memory.deleted",
                    namespace=m.namespace,
                    memory_id=m.id,
                    coordinate=m.coordinate,
                    timestamp=at,
                    memory_type=m.memory_type.value,
                )
                for m in memories
            ]
        )

    def linked(self, links: Sequence[Link], created: bool = True) -> None:
        if not self.enabled:
            return
        at = now()
        self._publish(
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
