"""Keeps the canonical store's change feed from growing without end.

Every write appends to the feed (``IKeyValueStore.changes_since``), which
processes with their own indexes read to stay current (``services.follower``).
Nothing else needs old changes: a process that was stopped, or fell behind,
by more than what the feed keeps rebuilds its indexes from the memories
themselves (it sees the feed's floor above its position). So every
``every`` writes, the process that wrote them prunes the feed to its newest
``keep`` changes: one statement, in a thread of its own so that the write
which fills the round does not wait for it (a failure is logged and the
next round tries again; the write has committed either way).
"""

from __future__ import annotations

import logging
import threading

from ..errors import SFMError
from ..interfaces.storage import IKeyValueStore

__all__ = ["ChangeFeedRetention"]
log = logging.getLogger(__name__)


class ChangeFeedRetention:
    """Prunes the feed of ``kv`` to ``keep`` changes every ``every`` writes (``keep`` 0: never)."""

    def __init__(self, kv: IKeyValueStore, keep: int, every: int | None = None) -> None:
        self.kv = kv
        self.keep = max(0, int(keep))
        self.every = max(1, int(every)) if every is not None else max(1000, self.keep // 10)
        self.pruned = 0
        self._since = 0
        self._lock = threading.Lock()
        self._running: threading.Thread | None = None

    def wrote(self, count: int) -> None:
        """Count ``count`` changes written by this process; prune when the round is full."""
        if not self.keep or count <= 0:
            return
        with self._lock:
            self._since += count
            if self._since < self.every or (self._running is not None and self._running.is_alive()):
                return
            self._since = 0
            self._running = threading.Thread(target=self._prune, name="soma-feed-retention", daemon=True)
            self._running.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for a prune under way (before the store closes)."""
        running = self._running
        if running is not None:
            running.join(timeout)

    def _prune(self) -> None:
        try:
            self.pruned += self.kv.prune_changes(self.keep)
        except SFMError as exc:
            log.warning("pruning the change feed failed (retried after %d more writes): %s", self.every, exc)
