"""The HTTP API: ``create_app()`` builds the FastAPI app (``soma serve`` runs it).

``somafractalmemory.api.schemas`` (the request and response models) needs
only pydantic; everything else here needs the ``[api]`` extra. Importing
this package builds nothing: ``create_app`` is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app"]

if TYPE_CHECKING:
    from .app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
