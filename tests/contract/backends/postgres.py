"""PostgreSQL adapters for the contract tests: each on a fresh schema, migrated."""

from __future__ import annotations

from typing import Any

import pytest


def _store(request: pytest.FixtureRequest) -> Any:
    from somafractalmemory.adapters.postgres import PostgresStore

    dsn, schema = request.getfixturevalue("pg_schema")
    store = PostgresStore(dsn, schema=schema, max_size=4)
    store.migrate()
    return store


def _keyword(request: pytest.FixtureRequest) -> Any:
    from somafractalmemory.adapters.postgres import PostgresKeywordIndex, migrate

    dsn, schema = request.getfixturevalue("pg_schema")
    index = PostgresKeywordIndex(dsn, schema=schema, max_size=4)
    migrate(index.pool)
    return index


FACTORIES = {
    "kv": {"postgres": _store},
    "graph": {"postgres": _store},
    "keyword": {"postgres": _keyword},
}
