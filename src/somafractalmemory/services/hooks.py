"""User hooks around store, recall and forget (``set_hook``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInput

__all__ = ["HOOK_EVENTS", "Hooks"]

HOOK_EVENTS = (
    "before_store",
    "after_store",
    "before_recall",
    "after_recall",
    "before_forget",
    "after_forget",
)
log = logging.getLogger(__name__)


class Hooks:
    """One callable per hook event. ``before_*`` hooks may raise to veto."""

    def __init__(self) -> None:
        self._hooks: dict[str, Callable[..., Any]] = {}

    def set(self, event: str, fn: Callable[..., Any] | None) -> None:
        if event not in HOOK_EVENTS:
            raise InvalidInput("event", f"unknown hook {event!r}; known: {', '.join(HOOK_EVENTS)}")
        if fn is None:
            self._hooks.pop(event, None)
        else:
            self._hooks[event] = fn

    def fire(self, event: str, **data: Any) -> None:
        fn = self._hooks.get(event)
        if fn is None:
            return
        if event.startswith("before_"):
            fn(**data)  # a veto propagates
            return
        try:
            fn(**data)
        except Exception:  # an after-hook must not undo a completed write
            log.exception("hook %s failed", event)
