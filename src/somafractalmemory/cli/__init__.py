"""``soma``: the command-line shell over the memory system (see docs/CLI.md)."""

from __future__ import annotations

from .main import cli, main

__all__ = ["cli", "main"]
