"""Vector stores for the contract tests: the reference and the fast core.

* ``memory``: ``InMemoryVectorStore``, the reference.
* ``fast``: ``FastCoreVectorStore``, exact slab search.
* ``fast_persisted``: the fast core on disk, flushed and re-opened from its
  files after every write, so every contract test also checks persistence.
* ``fast_ann``: the fast core with the ANN threshold at 1 and the index
  built inline, so searches go through HNSW whenever ``2k < count``. The
  graph is built by one thread: with several, it depends on their timing,
  and a point was now and then missing from the candidates of a query in
  ``test_congruent_with_the_reference`` (31 of 300 builds in one process),
  which compares with exact search. How close the ANN comes to exact search
  at scale is measured by ``benchmarks/fast_core_smoke.py --ann-check``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from somafractalmemory.adapters.memory.vectors import InMemoryVectorStore
from somafractalmemory.fastcore import AnnParams, FastCoreVectorStore, ann_available
from somafractalmemory.interfaces.storage import VectorPoint

DIM = 8


class ReopeningFastStore:
    """A fast core that writes itself to disk and re-opens after each write."""

    name = "fast"
    dim = DIM

    def __init__(self, path: Path) -> None:
        self._path = path
        self._store = FastCoreVectorStore(DIM, path)

    def _reopen(self) -> None:
        self._store.close()  # close() flushes
        self._store = FastCoreVectorStore(DIM, self._path)

    def upsert(self, namespace: str, points: Sequence[VectorPoint]) -> None:
        self._store.upsert(namespace, points)
        self._reopen()

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        self._store.delete(namespace, ids)
        self._reopen()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _memory(request: pytest.FixtureRequest) -> Any:
    return InMemoryVectorStore(DIM)


def _fast(request: pytest.FixtureRequest) -> Any:
    return FastCoreVectorStore(DIM)


def _fast_persisted(request: pytest.FixtureRequest) -> Any:
    return ReopeningFastStore(request.getfixturevalue("tmp_path") / "vectors")


def _fast_ann(request: pytest.FixtureRequest) -> Any:
    if not ann_available():
        pytest.skip("usearch is not installed (extra 'ann')")
    params = AnnParams(threshold=1, oversample=2, threads=1)
    return FastCoreVectorStore(DIM, ann_params=params, ann_background=False)


FACTORIES = {
    "vector": {
        "memory": _memory,
        "fast": _fast,
        "fast_persisted": _fast_persisted,
        "fast_ann": _fast_ann,
    }
}
