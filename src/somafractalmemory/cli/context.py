"""What every command shares: the invocation state and argument parsing helpers.

``State`` holds the global options and builds the memory system once, on
first use, so ``soma --help`` never touches a backend; the group closes it
when the command ends (vectors are flushed to disk then).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ..core import SomaFractalMemoryEnterprise
from ..errors import InvalidInput

__all__ = ["COORD_ARGS", "State", "load_json_arg", "parse_config", "parse_filters", "pass_state"]

#: ``context_settings`` of commands taking positional coordinates: lets one
#: start with "-" (``soma get -1,2,3``) instead of being read as an option.
COORD_ARGS: dict[str, Any] = {"ignore_unknown_options": True}


@dataclass
class State:
    """Global options of one ``soma`` invocation."""

    mode: str
    namespace: str
    config: dict[str, Any] = field(default_factory=dict)
    json_output: bool = False
    _memory: SomaFractalMemoryEnterprise | None = None

    @property
    def memory(self) -> SomaFractalMemoryEnterprise:
        """The memory system, created on first use (once per invocation)."""
        if self._memory is None:
            from ..factory import create_memory_system

            self._memory = create_memory_system(self.mode, self.namespace, self.config)
        return self._memory

    def close(self) -> None:
        memory, self._memory = self._memory, None
        if memory is not None:
            memory.close()


#: Decorator: call the command with the ``State`` as first argument.
pass_state = click.make_pass_decorator(State)


def _read_text(source: str, field_name: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(field_name, f"cannot read {source!r}: {exc.strerror or exc}") from None


def load_json_arg(text: str, field_name: str) -> Any:
    """JSON given inline, or read from a file with ``@path`` (``@-`` = stdin)."""
    raw = _read_text(text[1:], field_name) if text.startswith("@") else text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            field_name, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


def parse_config(value: str | None, data_dir: str | None) -> dict[str, Any]:
    """``--config`` (inline JSON object or a JSON file path) plus ``--data-dir``."""
    config: Any = {}
    if value:
        stripped = value.strip()
        inline = stripped.startswith(("{", "["))
        config = load_json_arg(stripped if inline else "@" + value, "config")
        if not isinstance(config, dict):
            raise InvalidInput("config", f"must be a JSON object, got {type(config).__name__}")
    if data_dir:
        config["data_dir"] = data_dir
    return dict(config)


def parse_filters(pairs: Sequence[str], filters_json: str | None) -> Any:
    """``--filters JSON`` merged with repeated ``--filter key=value``.

    A value is read as JSON when it parses (``5``, ``true``, ``["a","b"]``),
    otherwise it is the string itself. The core validates the result.
    """
    filters: Any = load_json_arg(filters_json, "filters") if filters_json else None
    if not pairs:
        return filters
    if filters is not None and not isinstance(filters, dict):
        raise InvalidInput("filters", f"must be a JSON object, got {type(filters).__name__}")
    merged: dict[str, Any] = dict(filters or {})
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput("filter", f"expected key=value, got {pair!r}")
        try:
            merged[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            merged[key.strip()] = raw
    return merged
