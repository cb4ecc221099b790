"""Contract fixtures: every port test runs against every adapter of that port.

Each module in ``tests/contract/backends/`` exposes ``FACTORIES``, a mapping
``port -> {adapter name -> factory(request) -> adapter}``. A factory may use
fixtures through ``request.getfixturevalue`` (``tmp_path``, ``pg_schema``,
``redis_prefix``). Adding a backend = adding one module; no test changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from . import backends

Factory = Callable[[pytest.FixtureRequest], Any]
PORTS = ("kv", "graph", "vector", "keyword", "cache", "locks", "ratelimit")


def _collect() -> dict[str, dict[str, Factory]]:
    registry: dict[str, dict[str, Factory]] = {port: {} for port in PORTS}
    for info in pkgutil.iter_modules(backends.__path__):
        module = importlib.import_module(f"{backends.__name__}.{info.name}")
        for port, factories in getattr(module, "FACTORIES", {}).items():
            registry[port].update(factories)
    return registry


REGISTRY = _collect()


def _fixture(port: str) -> Any:
    names = sorted(REGISTRY[port])

    @pytest.fixture(params=names, ids=names)
    def _adapter(request: pytest.FixtureRequest) -> Iterator[Any]:
        adapter = REGISTRY[port][request.param](request)
        try:
            yield adapter
        finally:
            close = getattr(adapter, "close", None)
            if close is not None:
                close()

    return _adapter


kv_store = _fixture("kv")
graph_store = _fixture("graph")
vector_store = _fixture("vector")
keyword_index = _fixture("keyword")
cache = _fixture("cache")
lock_manager = _fixture("locks")
rate_limiter = _fixture("ratelimit")
