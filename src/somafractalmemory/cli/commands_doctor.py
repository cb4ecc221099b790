"""``soma doctor``: is every configured service reachable, which version, how fast."""

from __future__ import annotations

import click

from . import render
from .context import State, pass_state

__all__ = ["COMMANDS", "doctor"]


@click.command()
@pass_state
def doctor(state: State) -> None:
    """Probe each configured service (PostgreSQL, Redis, Qdrant, Kafka); exit 3 if any is down."""
    from ..adapters.probes import diagnose

    report = diagnose(state.config)
    ok = all(entry["ok"] for entry in report)
    if state.json_output:
        render.emit_json({"ok": ok, "mode": state.mode, "services": report})
    elif not report:
        click.echo(f"mode {state.mode}: no external service configured (everything runs in process)")
    else:
        render.table(
            ["service", "target", "status", "version", "latency_ms", "detail"],
            [
                (
                    e["service"],
                    e["target"],
                    "reachable" if e["ok"] else "DOWN",
                    e.get("version", "-"),
                    e["latency_ms"],
                    e.get("error", ""),
                )
                for e in report
            ],
        )
    if not ok:
        raise click.exceptions.Exit(3)


COMMANDS: list[click.Command] = [doctor]
