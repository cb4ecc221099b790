"""Soma Fractal Memory: a memory service for AI agents.

Store JSON memories at coordinates of a namespace, recall them by meaning and
keyword, link them into a graph, find them by region::

    from somafractalmemory import create_memory_system, MemoryMode, MemoryType

    memory = create_memory_system(MemoryMode.TEST, "demo")
    memory.store_memory((1, 2, 3), {"task": "write docs"}, MemoryType.EPISODIC)
    memory.recall("docs")
"""

from __future__ import annotations

from .core import SomaFractalMemoryEnterprise
from .errors import (
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    Forbidden,
    InvalidInput,
    LockTimeout,
    MissingDependency,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SFMError,
    Unauthorized,
    WriteConflict,
)
from .factory import MemoryMode, create_backends, create_memory_system
from .models import (
    Coordinate,
    HistoryEntry,
    Link,
    Memory,
    MemoryEvent,
    MemoryType,
    RecallHit,
    ScoreParts,
    canonical_coordinate,
    importance_norm,
    memory_id,
)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "ConfigurationError",
    "Conflict",
    "Coordinate",
    "Forbidden",
    "HistoryEntry",
    "InvalidInput",
    "Link",
    "LockTimeout",
    "Memory",
    "MemoryEvent",
    "MemoryMode",
    "MemoryType",
    "MissingDependency",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RecallHit",
    "SFMError",
    "ScoreParts",
    "SomaFractalMemoryEnterprise",
    "Unauthorized",
    "WriteConflict",
    "__version__",
    "canonical_coordinate",
    "create_backends",
    "create_memory_system",
    "importance_norm",
    "memory_id",
]
