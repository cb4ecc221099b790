"""``PostgresStore``: the canonical store (``IKeyValueStore``) and the link
store (``IGraphStore``) on one PostgreSQL database.

Because both live in one database, deleting memories removes the links
touching them in the same transaction. Memories and history are in
``memories.py``, links in ``graph.py``, the change feed in ``changes.py``, the
tables in ``migrations.py``.
"""

from __future__ import annotations

from .changes import ChangeFeedTable
from .graph import LinkTable
from .memories import MemoryTables
from .migrations import migrate
from .pool import PostgresPool

__all__ = ["PostgresStore"]


class PostgresStore(MemoryTables, LinkTable, ChangeFeedTable):
    """Memories, history and links in PostgreSQL.

    ``PostgresStore(url, schema=..., max_size=...)`` opens its own pool (and
    closes it on ``close()``); ``PostgresStore(pool)`` shares a pool owned
    by the caller. Call ``migrate()`` once before first use (the factory
    does unless told not to).
    """

    name = "postgres"

    def __init__(
        self,
        url_or_pool: str | PostgresPool,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if isinstance(url_or_pool, PostgresPool):
            self._pool = url_or_pool
            self._owns_pool = False
        else:
            self._pool = PostgresPool(
                url_or_pool,
                schema=schema,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout,
                connect_timeout=connect_timeout,
            )
            self._owns_pool = True

    @property
    def pool(self) -> PostgresPool:
        """The connection pool (share it with ``PostgresKeywordIndex``)."""
        return self._pool

    def migrate(self) -> list[int]:
        """Apply missing schema migrations; return the versions applied."""
        return migrate(self._pool)

    def health(self) -> None:
        self._pool.health()

    def close(self) -> None:
        if self._owns_pool:
            self._pool.close()
