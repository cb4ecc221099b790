"""Validation of events against ``schemas/memory.event.json``.

The schema is compiled once to Python code (fastjsonschema), so validating
every event costs microseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

import fastjsonschema

from ..errors import InvalidInput

__all__ = ["event_schema", "validate_event"]


@lru_cache(maxsize=1)
def event_schema() -> dict[str, Any]:
    text = resources.files("somafractalmemory").joinpath("schemas/memory.event.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Callable[[Any], Any]:
    validator: Callable[[Any], Any] = fastjsonschema.compile(event_schema())
    return validator


def validate_event(event: dict[str, Any]) -> None:
    """Raise ``InvalidInput`` (field ``event...``) if the event breaks the schema."""
    try:
        _validator()(event)
    except fastjsonschema.JsonSchemaValueException as exc:
        where = str(exc.name or "data").replace("data", "event", 1)
        raise InvalidInput(where, str(exc.message)) from None
