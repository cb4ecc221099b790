"""Moving many memories: bulk store, export and import (JSONL)."""

from __future__ import annotations

import io
import json
import re
import sys
from typing import Any

import click

from ..errors import InvalidInput
from . import render
from .context import State, pass_state, remote

__all__ = ["COMMANDS"]

BATCH = 1000
_ITEM_FIELD = re.compile(r"^items\[(\d+)\]")
SOURCE = click.Path(exists=True, dir_okay=False, allow_dash=True)
TARGET = click.Path(dir_okay=False, allow_dash=True)


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    with open(source, encoding="utf-8") as fh:
        return fh.read()


def _shift(field: str, offset: int) -> str:
    """``items[3].payload`` of a batch starting at ``offset`` -> its index in the whole input."""
    return _ITEM_FIELD.sub(lambda m: f"items[{int(m.group(1)) + offset}]", field)


def _bulk_items(text: str) -> list[Any]:
    """Items from a JSON array (or one object), else from JSON lines."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, list):
        return whole
    if isinstance(whole, dict):
        return [whole]
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"line {number}", f"not valid JSON ({exc.msg})") from None
    return items


@remote
@click.command("store-bulk")
@click.argument("source", type=SOURCE)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=BATCH,
    show_default=True,
    help="items per core call (one round trip per store per batch; one request with --url).",
)
@click.option("--no-progress", is_flag=True, help="never show the progress bar.")
@pass_state
def store_bulk(state: State, source: str, batch_size: int, no_progress: bool) -> None:
    """Store many memories from SOURCE (a file, or - for stdin).

    SOURCE holds JSON lines or a JSON array of items
    {"coord" | "coordinate", "payload", "type" | "memory_type"}.
    """
    items = _bulk_items(_read(source))
    stored = 0
    with render.progress(not no_progress, len(items), "storing") as advance:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            try:
                stored += len(state.memory.store_memories_bulk(chunk))
            except InvalidInput as exc:  # report the index in the whole input, not the batch
                raise InvalidInput(_shift(exc.field, start), exc.message) from None
            advance(len(chunk))
    if state.json_output:
        render.emit_json({"stored": stored, "items": len(items), "namespace": state.memory.namespace})
    else:
        click.echo(
            f"stored {stored} memories from {len(items)} items in namespace {state.memory.namespace!r}"
        )


@remote
@click.command("export")
@click.argument("target", type=TARGET)
@pass_state
def export(state: State, target: str) -> None:
    """Write the namespace (memories, history, links) as JSONL to TARGET (- = stdout)."""
    lines = state.memory.export_memories(sys.stdout if target == "-" else target)
    if target == "-":
        sys.stdout.flush()
        click.echo(f"exported {lines} lines from namespace {state.memory.namespace!r}", err=True)
    elif state.json_output:
        render.emit_json({"lines": lines, "path": target, "namespace": state.memory.namespace})
    else:
        click.echo(f"exported {lines} lines from namespace {state.memory.namespace!r} to {target}")


@remote
@click.command("import")
@click.argument("source", type=SOURCE)
@click.option("--no-progress", is_flag=True, help="never show the progress bar.")
@pass_state
def import_(state: State, source: str, no_progress: bool) -> None:
    """Read a JSONL export from SOURCE (- = stdin) into the namespace."""
    text = _read(source)
    with render.progress(not no_progress, text.count("\n") or 1, "importing") as advance:
        counts = state.memory.import_memories(io.StringIO(text), advance)
    if state.json_output:
        render.emit_json({**counts, "namespace": state.memory.namespace})
    else:
        click.echo(
            f"imported {counts['memories']} memories, {counts['history']} history entries and "
            f"{counts['links']} links into namespace {state.memory.namespace!r}"
        )


COMMANDS: list[click.Command] = [store_bulk, export, import_]
