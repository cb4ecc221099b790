"""PostgreSQL adapters (``pip install 'somafractalmemory[postgres]'``).

* ``PostgresStore``: memories (JSONB), history and links (``IKeyValueStore``
  and ``IGraphStore``), with a GiST index for range queries;
* ``PostgresKeywordIndex``: BM25 over full-text search (``IKeywordIndex``);
* ``PostgresPool``: the shared psycopg pool that maps driver errors to the
  library's exception tree;
* ``migrate``: versioned schema migrations.

Importing this package without psycopg raises ``MissingDependency`` (an
``ImportError``) naming the extra.
"""

from __future__ import annotations

from .keyword import PostgresKeywordIndex
from .migrations import MIGRATIONS, migrate
from .pool import PostgresPool
from .store import PostgresStore

__all__ = ["MIGRATIONS", "PostgresKeywordIndex", "PostgresPool", "PostgresStore", "migrate"]
