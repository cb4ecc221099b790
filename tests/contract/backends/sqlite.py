"""Embedded SQLite adapters for the contract tests, each on a fresh file."""

from __future__ import annotations

from typing import Any

import pytest

from somafractalmemory.adapters.sqlite import SQLiteKeywordIndex, SQLiteStore


def _store(request: pytest.FixtureRequest) -> Any:
    return SQLiteStore(request.getfixturevalue("tmp_path") / "sfm.db")


def _keywords(request: pytest.FixtureRequest) -> Any:
    return SQLiteKeywordIndex(request.getfixturevalue("tmp_path") / "keywords.db")


def _keywords_shared(request: pytest.FixtureRequest) -> Any:
    """The keyword index sharing the store's database file and connection."""
    store = SQLiteStore(request.getfixturevalue("tmp_path") / "shared.db")
    index = SQLiteKeywordIndex(database=store.database)
    store.close()  # the index keeps the shared connection open until it closes
    return index


FACTORIES = {
    "kv": {"sqlite": _store},
    "graph": {"sqlite": _store},
    "keyword": {"sqlite": _keywords, "sqlite_shared": _keywords_shared},
}
