"""``soma mcp``: serve one namespace to AI agents over the Model Context Protocol.

The server (``somafractalmemory.mcp.build_server``) acts on the namespace
given by the global ``--namespace`` and on no other; ``--mode``,
``--config`` and ``--data-dir`` choose the backends as for every command.
With ``--transport stdio`` (the default) an agent client launches ``soma mcp``
and talks JSON-RPC over its stdin and stdout; the server stops when the client
closes stdin, closes the memory system (vectors flushed) and exits 0. SIGTERM
or Ctrl-C ends it at once instead (a blocked read of stdin cannot be
interrupted): what was stored is kept, and the next start re-indexes any
vectors not yet flushed. With ``--transport http`` it serves streamable HTTP
at ``http://HOST:PORT/mcp``; on SIGTERM or Ctrl-C uvicorn finishes the
requests in flight, then the memory system is closed and the command exits 0.
"""

from __future__ import annotations

import signal
from types import FrameType

import click

from .context import State, pass_state

__all__ = ["COMMANDS", "mcp_command"]

DEFAULT_PORT = 9596


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


@click.command("mcp")
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio (launched by an agent client) or http (streamable HTTP at /mcp).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (http only).")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="port to bind (http only).",
)
@pass_state
def mcp_command(state: State, transport: str, host: str, port: int) -> None:
    """Serve the namespace to AI agents as MCP tools (store, recall, link, ...)."""
    from ..mcp import build_server  # the [mcp] extra; imported here so `soma --help` works without it

    server = build_server(state.core)
    if transport == "stdio":
        # a blocked read of stdin cannot be interrupted, so Ctrl-C would wait for the next line:
        # let SIGINT end the process at once, as SIGTERM does
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        server.run("stdio")
        return
    # uvicorn drains, then re-raises the signal it caught: end normally, so the group closes the memory
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stopped)
    server.run("streamable-http", host=host, port=port)


COMMANDS: list[click.Command] = [mcp_command]
