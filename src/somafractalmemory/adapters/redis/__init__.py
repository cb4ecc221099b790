"""Redis adapters: a failure-tolerant cache, distributed locks, shared rate limits.

Needs the ``redis`` extra (``pip install 'somafractalmemory[redis]'``);
importing this package without it raises ``MissingDependency``.
"""

from __future__ import annotations

from .cache import RedisCache
from .client import build_client
from .locks import RedisLock, RedisLockManager
from .ratelimit import RedisRateLimiter

__all__ = ["RedisCache", "RedisLock", "RedisLockManager", "RedisRateLimiter", "build_client"]
