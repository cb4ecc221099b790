"""``soma worker``: consume ``memory.events`` and do the derived work.

A thin shell over ``eventing.runtime.run_worker`` (``scripts/run_consumers.py``
calls the same function). Logs are JSON lines on stderr. On SIGTERM or
Ctrl-C the worker finishes and commits the batch in hand, leaves its
consumer group and exits 0.
"""

from __future__ import annotations

import click

from ..settings import Settings
from . import render
from .context import State, pass_state

__all__ = ["COMMANDS", "worker"]


@click.command()
@click.option("--group", default=None, help="consumer group [env SOMA_WORKER_GROUP; default soma-indexers].")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="port of the Prometheus /metrics endpoint, 0 = none [env SOMA_METRICS_PORT; default 8001].",
)
@click.option("--burst", is_flag=True, help="stop once caught up (tests, backfills) and print the counts.")
@click.option("--relay", is_flag=True, help="also run the outbox relay (PostgreSQL to Kafka) here.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="messages handled (and committed) per batch.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="log level (logs are JSON lines on stderr).",
)
@pass_state
def worker(
    state: State,
    group: str | None,
    metrics_port: int | None,
    burst: bool,
    relay: bool,
    batch_size: int,
    log_level: str,
) -> None:
    """Consume memory.events in a consumer group and keep the indexes up to date."""
    from ..api.logging import configure_logging
    from ..eventing.runtime import WorkerConfig, run_worker

    configure_logging(log_level.upper())
    settings = Settings()
    config = WorkerConfig(
        group=group or settings.worker_group,
        metrics_port=settings.metrics_port if metrics_port is None else metrics_port,
        burst=burst,
        relay=relay,
        batch_size=batch_size,
    )
    summary = run_worker(state.mode, state.config, config, settings)
    render.mapping(state.json_output, {k: int(v) for k, v in summary.items()})


COMMANDS: list[click.Command] = [worker]
