"""Qdrant's local mode for the vector contract tests (no server needed).

* ``qdrant_memory``: ``QdrantVectorStore(location=":memory:")`` with
  ``push_filters=True``: filters are translated and sent to Qdrant, as on a
  server.
* ``qdrant_path``: local mode persisted in a temporary directory, with local
  mode's default of checking filters client side.

Both run the adapter code a Qdrant server does; only the transport and the
payload indexes (ignored in local mode) differ.
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
    return _store(location=":memory:", push_filters=True)


def _path(request: pytest.FixtureRequest) -> Any:
    return _store(path=request.getfixturevalue("tmp_path") / "qdrant")


FACTORIES = {"vector": {"qdrant_memory": _memory, "qdrant_path": _path}}
