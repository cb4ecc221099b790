"""In-process adapters for every storage port: no services, nothing on disk.

First-class implementations, run by the same contract tests as the real
backends; ``MemoryMode.TEST`` wires all of them.
"""

from __future__ import annotations

from .bus import InProcessEventBus, NullEventBus
from .cache import InMemoryCache, InMemoryLock, InMemoryLockManager, InMemoryRateLimiter
from .graph import InMemoryGraphStore
from .keyword import InMemoryKeywordIndex
from .kv import InMemoryKeyValueStore

__all__ = [
    "InMemoryCache",
    "InMemoryGraphStore",
    "InMemoryKeyValueStore",
    "InMemoryKeywordIndex",
    "InMemoryLock",
    "InMemoryLockManager",
    "InMemoryRateLimiter",
    "InProcessEventBus",
    "NullEventBus",
]
