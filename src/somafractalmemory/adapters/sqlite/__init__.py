"""Embedded, durable adapters on SQLite: no services, one file on disk.

``SQLiteStore`` is the canonical store and the link store (one database);
``SQLiteKeywordIndex`` is FTS5 keyword search, in its own file or sharing
the store's connection. ``MemoryMode.DEVELOPMENT`` uses them by default.
"""

from __future__ import annotations

from .db import Database
from .keyword import SQLiteKeywordIndex
from .store import SQLiteStore

__all__ = ["Database", "SQLiteKeywordIndex", "SQLiteStore"]
