"""Qdrant's local mode for the vector contract tests (no server needed).

* ``qdrant_memory``: ``QdrantVectorStore(location=":memory:")``.
* ``qdrant_path``: local mode persisted in a temporary directory.

Both run the same adapter code a Qdrant server does; only the transport and
the payload indexes (ignored in local mode) differ.
"""

from __future__ import annotations

from typing import Any

import pytest

from .vectors import DIM


def _store(**kwargs: Any) -> Any:
    pytest.importorskip("qdrant_client", reason="qdrant-client is not installed (extra 'qdrant')")
    from somafractalmemory.adapters.qdrant import QdrantVectorStore

    return QdrantVectorStore(dim=DIM, **kwargs)


def _memory(request: pytest.FixtureRequest) -> Any:
    return _store(location=":memory:")


def _path(request: pytest.FixtureRequest) -> Any:
    return _store(path=request.getfixturevalue("tmp_path") / "qdrant")


FACTORIES = {"vector": {"qdrant_memory": _memory, "qdrant_path": _path}}
