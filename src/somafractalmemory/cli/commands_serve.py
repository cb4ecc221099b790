"""``soma serve``: run the HTTP API under uvicorn.

Each worker process builds its own app with ``api.app:create_app`` (uvicorn's
factory mode; with several workers through ``cli.supervised``, which also
stops a worker whose supervisor died), so nothing is built in this process.
The global ``--mode``, ``--namespace`` and ``--data-dir`` reach the workers
as the environment variables the settings read (``MEMORY_MODE``,
``SOMA_NAMESPACE``, ``SOMA_DATA_DIR``). On SIGTERM or SIGINT uvicorn stops
accepting connections, lets in-flight requests finish for up to
``--timeout-graceful`` seconds, then runs the app's shutdown (backends
flushed and closed) and exits 0.
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

import click

from ..errors import InvalidInput
from ..settings import Settings
from .context import State, pass_state
from .listen import balanced, run_workers
from .supervised import SUPERVISOR_PID, WORKER_APP_FACTORY

__all__ = ["COMMANDS", "serve"]

APP_FACTORY = "somafractalmemory.api.app:create_app"


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _exit_zero_when_stopped() -> None:
    """A requested stop (SIGTERM, Ctrl-C) ends ``soma serve`` with exit code 0.

    uvicorn replaces these handlers while it serves, drains, and then
    re-raises the signal it caught; the re-raise reaches these handlers, so
    the process exits 0 after a clean shutdown instead of dying by the signal.
    """
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stopped)


@click.command()
@click.option("--host", default=None, help="address to bind [env SOMA_HOST; default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="port to bind [env SOMA_PORT; default 9595].")
@click.option("--workers", type=int, default=None, help="worker processes [env UVICORN_WORKERS; default 1].")
@click.option(
    "--timeout-graceful",
    type=int,
    default=None,
    help="seconds to drain in-flight requests on shutdown [env UVICORN_TIMEOUT_GRACEFUL; default 30].",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="log level (logs are JSON lines on stderr).",
)
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=False,
    show_default=True,
    help="trust X-Forwarded-For/-Proto from FORWARDED_ALLOW_IPS (behind a reverse proxy).",
)
@pass_state
def serve(
    state: State,
    host: str | None,
    port: int | None,
    workers: int | None,
    timeout_graceful: int | None,
    log_level: str,
    proxy_headers: bool,
) -> None:
    """Run the HTTP API (Swagger UI at /docs; spec written to SOMA_OPENAPI_PATH)."""
    import uvicorn  # the [api] extra; imported here so `soma --help` works without it

    from ..api.auth import KeyRing
    from ..api.logging import uvicorn_log_config

    extra = set(state.config) - {"data_dir"}
    if extra:
        raise InvalidInput("config", "soma serve reads its settings from the environment; drop --config")
    os.environ["MEMORY_MODE"] = state.mode
    os.environ["SOMA_NAMESPACE"] = state.namespace
    if "data_dir" in state.config:
        os.environ["SOMA_DATA_DIR"] = str(state.config["data_dir"])
    settings = Settings()
    # fail here, with a plain message and exit code 3, rather than in every worker
    mode = state.mode.strip().lower()
    KeyRing.from_settings(settings.api_keys, settings.api_keys_file, mode, settings.namespace)
    workers = settings.uvicorn_workers if workers is None else workers
    if workers < 1:
        raise InvalidInput("workers", "must be at least 1")
    if workers > 1 and mode == "test":
        click.echo(
            f"warning: test mode keeps everything in each process; {workers} workers share nothing", err=True
        )
    options: dict[str, Any] = {
        "factory": True,
        "host": host or settings.host,
        "port": settings.port if port is None else port,
        "workers": workers,
        "timeout_graceful_shutdown": (
            settings.uvicorn_timeout_graceful if timeout_graceful is None else timeout_graceful
        ),
        "log_config": uvicorn_log_config(log_level),
        "log_level": log_level,
        "access_log": False,  # the app logs one JSON line per request itself
        "proxy_headers": proxy_headers,
        "server_header": False,
        "lifespan": "on",
    }
    _exit_zero_when_stopped()
    if workers == 1:
        uvicorn.run(APP_FACTORY, **options)
        return
    os.environ[SUPERVISOR_PID] = str(os.getpid())  # workers stop if this process dies (cli.supervised)
    if balanced():  # one listening socket per worker, see cli.listen
        run_workers(uvicorn.Config(WORKER_APP_FACTORY, **options), options["host"], options["port"])
        return
    uvicorn.run(WORKER_APP_FACTORY, **options)


COMMANDS: list[click.Command] = [serve]
