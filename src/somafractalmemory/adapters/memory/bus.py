"""In-process event buses (``IEventBus``).

``InProcessEventBus`` delivers every event synchronously, inside
``publish``, to each subscriber in subscription order, so ``pending()`` is
always 0. A subscriber that raises is logged and counted in ``failures``;
it neither stops delivery to the other subscribers nor fails the write that
published the event. The last ``keep_last`` events stay inspectable in
``events``. ``NullEventBus`` drops everything (eventing turned off).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from ...models import MemoryEvent

__all__ = ["InProcessEventBus", "NullEventBus"]

log = logging.getLogger(__name__)

Handler = Callable[[MemoryEvent], None]


class InProcessEventBus:
    """Synchronous delivery within the process; keeps the last events."""

    name = "memory"
    transactional = False

    def __init__(self, keep_last: int = 1000, validator: Callable[[MemoryEvent], None] | None = None) -> None:
        """``validator`` (e.g. the JSON-schema check) is called on every event
        before any is delivered; it raises to reject the whole batch."""
        self._recent: deque[MemoryEvent] = deque(maxlen=max(0, keep_last))
        self._handlers: list[Handler] = []
        self._validator = validator
        self._lock = threading.Lock()
        self.published = 0
        self.failures = 0

    def publish(self, events: Sequence[MemoryEvent]) -> None:
        if self._validator is not None:
            for event in events:
                self._validator(event)
        with self._lock:
            self._recent.extend(events)
            self.published += len(events)
            handlers = list(self._handlers)
        for event in events:
            for handler in handlers:
                try:
                    handler(event)
                except Exception:
                    with self._lock:
                        self.failures += 1
                    log.exception("event subscriber failed on %s %s", event.type, event.event_id)

    def subscribe(self, handler: Handler) -> None:
        with self._lock:
            self._handlers.append(handler)

    @property
    def events(self) -> list[MemoryEvent]:
        """The most recent events, oldest first."""
        with self._lock:
            return list(self._recent)

    def clear(self) -> None:
        with self._lock:
            self._recent.clear()

    def pending(self) -> int:
        return 0

    def close(self) -> None:
        with self._lock:
            self._handlers.clear()


class NullEventBus:
    """Accepts and drops every event; for when eventing is off."""

    name = "null"
    transactional = False

    def publish(self, events: Sequence[MemoryEvent]) -> None:
        return None

    def subscribe(self, handler: Handler) -> None:
        return None

    def pending(self) -> int:
        return 0

    def close(self) -> None:
        return None
