"""Validation of events against ``schemas/memory.event.json``."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from ..errors import InvalidInput

__all__ = ["event_schema", "validate_event"]


@lru_cache(maxsize=1)
def event_schema() -> dict[str, Any]:
    text = resources.files("somafractalmemory").joinpath("schemas/memory.event.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(event_schema())


def validate_event(event: dict[str, Any]) -> None:
    """Raise ``InvalidInput`` (field ``event``) if the event breaks the schema."""
    error = next(iter(_validator().iter_errors(event)), None)
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "event"
        raise InvalidInput(f"event.{where}" if where != "event" else where, error.message)
