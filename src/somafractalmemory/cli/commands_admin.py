"""Namespace-wide commands: stats, health, decay, consolidate, reindex."""

from __future__ import annotations

import click

from . import render
from .context import State, pass_state

__all__ = ["COMMANDS"]


@click.command()
@pass_state
def stats(state: State) -> None:
    """Counts for the namespace: memories by type, links, vectors, pending events."""
    render.mapping(state.json_output, state.memory.memory_stats())


@click.command()
@pass_state
def health(state: State) -> None:
    """Check every backend; exit 3 if any is unavailable."""
    report = state.memory.health_check()
    render.health(state.json_output, report)
    if not all(entry.get("ok") for entry in report.values()):
        raise click.exceptions.Exit(3)


@click.command()
@pass_state
def decay(state: State) -> None:
    """Apply the lifecycle policies once (TTL expiry, decay, size pruning)."""
    render.mapping(state.json_output, state.memory.run_decay_once())


@click.command()
@click.option(
    "--window",
    type=float,
    default=86400.0,
    show_default=True,
    help="consolidate episodic memories of the last this many seconds.",
)
@pass_state
def consolidate(state: State, window: float) -> None:
    """Summarise recent episodic memories into linked semantic ones."""
    created = state.memory.consolidate_memories(window)
    if not state.json_output:
        click.echo(f"created {len(created)} semantic memor{'y' if len(created) == 1 else 'ies'}")
    render.memories(state.json_output, created)


@click.command()
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=1000,
    show_default=True,
    help="memories embedded per batch.",
)
@click.option("--no-progress", is_flag=True, help="never show the progress bar.")
@pass_state
def reindex(state: State, batch_size: int, no_progress: bool) -> None:
    """Re-embed every memory of the namespace with the current embedder."""
    memory = state.memory
    total = memory.memory_stats()["total_memories"] if render.wants_progress(no_progress) else 0
    with render.progress(not no_progress, int(total), "reindexing") as advance:
        result = memory.reindex(batch_size, advance)
    render.mapping(state.json_output, result)


COMMANDS: list[click.Command] = [stats, health, decay, consolidate, reindex]
