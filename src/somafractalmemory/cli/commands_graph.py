"""Graph commands: link two memories, list neighbours, find a shortest path."""

from __future__ import annotations

import click

from ..errors import NotFound
from . import render
from .context import COORD_ARGS, State, load_json_arg, pass_state, remote

__all__ = ["COMMANDS"]


@remote
@click.command(context_settings=COORD_ARGS)
@click.argument("from_coord", metavar="FROM")
@click.argument("to_coord", metavar="TO")
@click.option("--type", "link_type", default="related", show_default=True, help="link type.")
@click.option("--weight", type=float, default=1.0, show_default=True, help="edge cost (> 0) for paths.")
@click.option("--metadata", default=None, metavar="JSON", help="link metadata as a JSON object (or @file).")
@pass_state
def link(
    state: State, from_coord: str, to_coord: str, link_type: str, weight: float, metadata: str | None
) -> None:
    """Add a directed link FROM -> TO (both memories must exist)."""
    meta = load_json_arg(metadata, "metadata") if metadata else None
    made = state.memory.link_memories(from_coord, to_coord, link_type, weight, meta)
    if state.json_output:
        render.emit_json(made.to_dict())
    else:
        click.echo(
            f"linked {render.coord_text(made.from_coord)} -> {render.coord_text(made.to_coord)} "
            f"({made.link_type}, weight {made.weight:g})"
        )


@remote
@click.command(context_settings=COORD_ARGS)
@click.argument("coord")
@click.option("--link-type", default=None, help="only links of this type.")
@click.option("--limit", type=int, default=None, help="at most this many links.")
@click.option("--direction", default="out", show_default=True, help="out, in or both.")
@pass_state
def neighbors(state: State, coord: str, link_type: str | None, limit: int | None, direction: str) -> None:
    """List the links of the memory at COORD."""
    found = state.memory.get_neighbors(coord, link_type, limit, direction)
    render.links(state.json_output, found)


@remote
@click.command(context_settings=COORD_ARGS)
@click.argument("from_coord", metavar="FROM")
@click.argument("to_coord", metavar="TO")
@click.option("--link-type", default=None, help="follow only links of this type.")
@click.option("--max-depth", type=int, default=8, show_default=True, help="at most this many hops.")
@pass_state
def path(state: State, from_coord: str, to_coord: str, link_type: str | None, max_depth: int) -> None:
    """Find the weighted shortest path FROM -> TO along links (exit 1 if none)."""
    found = state.memory.find_shortest_path(from_coord, to_coord, link_type, max_depth)
    if not found:
        raise NotFound(f"no path from {from_coord} to {to_coord}")
    render.path(state.json_output, found)


COMMANDS: list[click.Command] = [link, neighbors, path]
