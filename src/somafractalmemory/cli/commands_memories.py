"""Commands on single memories: store, remember, get, history, delete, range.

Coordinates are passed to the core as text (``"1,2,3"``); the core parses and
validates them. A coordinate starting with ``-`` is accepted as an argument
(``soma get -1,2,3``).
"""

from __future__ import annotations

import click

from ..errors import NotFound
from ..models import canonical_coordinate
from . import render
from .context import COORD_ARGS, State, load_json_arg, pass_state, remote

__all__ = ["COMMANDS"]

TYPE_HELP = "memory type: episodic or semantic."


@remote
@click.command(context_settings=COORD_ARGS)
@click.argument("coord")
@click.argument("payload")
@click.option("--type", "memory_type", default="episodic", show_default=True, help=TYPE_HELP)
@pass_state
def store(state: State, coord: str, payload: str, memory_type: str) -> None:
    """Store PAYLOAD (JSON, or @file) at COORD ("1,2,3"); updates any memory there."""
    mem = state.memory.store_memory(coord, load_json_arg(payload, "payload"), memory_type)
    render.memory(state.json_output, mem, "stored")


@remote
@click.command()
@click.argument("payload")
@click.option("--coord", default=None, help="coordinate to use; by default the service picks a free one.")
@click.option("--type", "memory_type", default="episodic", show_default=True, help=TYPE_HELP)
@pass_state
def remember(state: State, payload: str, coord: str | None, memory_type: str) -> None:
    """Store PAYLOAD (JSON, or @file) at a coordinate the service picks."""
    mem = state.memory.remember(load_json_arg(payload, "payload"), coord, memory_type)
    render.memory(state.json_output, mem, "remembered")


@remote
@click.command(context_settings=COORD_ARGS)
@click.argument("coord")
@pass_state
def get(state: State, coord: str) -> None:
    """Show the memory at COORD (exit 1 if there is none)."""
    mem = state.memory.get_memory(coord)
    if mem is None:
        raise NotFound(f"no memory at {coord} in namespace {state.memory.namespace!r}")
    render.memory(state.json_output, mem)


@remote
@click.command(context_settings=COORD_ARGS)
@click.argument("coord")
@pass_state
def history(state: State, coord: str) -> None:
    """List the recorded versions of the memory at COORD (exit 1 if it never existed)."""
    entries = state.memory.get_versions(coord)
    if not entries:
        raise NotFound(f"no history at {coord} in namespace {state.memory.namespace!r}")
    render.history(state.json_output, entries)


@remote
@click.command(context_settings=COORD_ARGS)
@click.argument("coords", nargs=-1, required=True)
@pass_state
def delete(state: State, coords: tuple[str, ...]) -> None:
    """Delete the memories at COORDS everywhere (exit 1 if any was absent)."""
    deleted = state.memory.delete_many(list(coords))
    requested = len({canonical_coordinate(c) for c in coords})
    if state.json_output:
        render.emit_json({"deleted": deleted, "requested": requested})
    else:
        click.echo(f"deleted {deleted} of {requested} memor{'y' if requested == 1 else 'ies'}")
    if deleted < requested:
        raise NotFound(f"{requested - deleted} of the coordinates held no memory")


@remote
@click.command("range")
@click.option("--min", "min_coord", required=True, help='lower corner, e.g. "0,0,0" (inclusive).')
@click.option("--max", "max_coord", required=True, help='upper corner, e.g. "5,5,5" (inclusive).')
@click.option("--type", "memory_type", default=None, help="only this memory type (episodic or semantic).")
@pass_state
def range_(state: State, min_coord: str, max_coord: str, memory_type: str | None) -> None:
    """List the memories inside the box from --min to --max."""
    found = state.memory.find_by_coordinate_range(min_coord, max_coord, memory_type)
    render.memories(state.json_output, found)


COMMANDS: list[click.Command] = [store, remember, get, history, delete, range_]
