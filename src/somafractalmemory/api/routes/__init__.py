"""The API's routes, one module per concern; ``ROUTERS`` is what the app includes."""

from __future__ import annotations

from fastapi import APIRouter

from . import admin, graph, memories, recall

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    memories.router,
    recall.router,
    graph.router,
    admin.router,
    admin.probes,
)
