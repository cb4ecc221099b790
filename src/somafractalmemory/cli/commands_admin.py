"""Namespace-wide commands: stats, health, metrics, decay, consolidate, reindex."""

from __future__ import annotations

import click

from . import render
from .context import State, pass_state, remote

__all__ = ["COMMANDS"]


@remote
@click.command()
@pass_state
def stats(state: State) -> None:
    """Counts for the namespace: memories by type, links, vectors, pending events."""
    render.mapping(state.json_output, state.memory.memory_stats())


@remote
@click.command()
@click.option(
    "--ready",
    "probe",
    flag_value="ready",
    default=None,
    help="only whether every backend answers (the server's /readyz); exit 3 if not.",
)
@click.option(
    "--live",
    "probe",
    flag_value="live",
    help="only whether the server answers (its /healthz); needs --url.",
)
@pass_state
def health(state: State, probe: str | None) -> None:
    """Check every backend; exit 3 if any is unavailable."""
    if probe == "live":
        render.mapping(state.json_output, state.server("soma health --live").live().model_dump())
        return
    if probe == "ready":
        if state.is_remote:
            answer = state.server().ready()
            ready, backends = answer.ready, answer.backends
        else:  # the server's rule, on the local backends
            backends = {port: bool(e.get("ok")) for port, e in state.memory.health_check().items()}
            ready = all(backends.values())
        render.readiness(state.json_output, ready, backends)
        if not ready:
            raise click.exceptions.Exit(3)
        return
    report = state.memory.health_check()
    render.health(state.json_output, report)
    if not all(entry.get("ok") for entry in report.values()):
        raise click.exceptions.Exit(3)


@remote
@click.command()
@pass_state
def metrics(state: State) -> None:
    """Print the server's Prometheus metrics (needs --url)."""
    text = state.server("soma metrics").metrics()
    if state.json_output:
        render.emit_json({"metrics": text})
    else:
        click.echo(text, nl=not text.endswith("\n"))


@click.command()
@pass_state
def decay(state: State) -> None:
    """Apply the lifecycle policies once (TTL expiry, decay, size pruning)."""
    render.mapping(state.json_output, state.core.run_decay_once())


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
    created = state.core.consolidate_memories(window)
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
    memory = state.core
    total = memory.memory_stats()["total_memories"] if render.wants_progress(no_progress) else 0
    with render.progress(not no_progress, int(total), "reindexing") as advance:
        result = memory.reindex(batch_size, advance)
    render.mapping(state.json_output, result)


COMMANDS: list[click.Command] = [stats, health, metrics, decay, consolidate, reindex]
