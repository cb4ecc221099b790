"""The ``soma`` command group: global options, command registration, exit codes.

Every command is a thin shell: it parses its arguments, makes one call on the
memory system (``SomaFractalMemoryEnterprise``) and renders the result
(``render``). The memory system is built once per invocation, on first use,
and closed when the command ends. With ``--url`` (``SOMA_URL``) the same
commands act on a server instead, through the HTTP API (``cli.remote``):
same output, same exit codes. Commands that only make sense locally (not
marked ``@remote``) then exit 2 at once.

Adding commands
---------------
Write a module ``somafractalmemory/cli/commands_<concern>.py`` that defines
click commands (use ``@pass_state`` from ``cli.context`` to receive the
``State``; ``state.memory`` is the memory system, local or remote;
``state.core`` the local one, for local-only commands; mark a command
``@remote`` when it runs on a server too) and lists them in a
module-level ``COMMANDS: list[click.Command]``; then add the module's dotted
name to ``COMMAND_MODULES`` below and document every command and option in
``docs/CLI.md`` (a test checks). Import heavy optional dependencies inside
the command function, so ``soma --help`` stays fast and works without them.

Exit codes
----------
``EXIT_CODES`` maps exception *types* to exit codes (first match wins):
0 ok, 1 not found, 2 usage or invalid input, 3 backend or server
unavailable, configuration error or rate limited, 4 conflict, 5 API key
missing, unknown or not allowed (141 when the reader of stdout goes away).
Errors are printed as ``error: <message>`` on stderr, never as a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from ..errors import (
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    SFMError,
    Unauthorized,
)
from . import render
from .context import State, parse_config, runs_remotely

__all__ = ["COMMAND_MODULES", "EXIT_CODES", "cli", "exit_code", "main", "register"]

#: Modules whose ``COMMANDS`` are registered on ``soma`` (help lists commands alphabetically).
COMMAND_MODULES: tuple[str, ...] = (
    "somafractalmemory.cli.commands_memories",
    "somafractalmemory.cli.commands_recall",
    "somafractalmemory.cli.commands_graph",
    "somafractalmemory.cli.commands_transfer",
    "somafractalmemory.cli.commands_admin",
    "somafractalmemory.cli.commands_serve",
    "somafractalmemory.cli.commands_mcp",
    "somafractalmemory.cli.commands_worker",
    "somafractalmemory.cli.commands_doctor",
)

#: Exception type -> exit code; the first matching row wins.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (NotFound, 1),
    (BrokenPipeError, 141),  # stdout closed by the reader, like SIGPIPE (128 + 13)
    (InvalidInput, 2),
    (OSError, 2),  # a path that cannot be read or written
    (BackendUnavailable, 3),
    (ConfigurationError, 3),
    (RateLimited, 3),  # the server refuses for now: retry later
    (Conflict, 4),
    (Unauthorized, 5),
    (Forbidden, 5),
    (SFMError, 1),
)
#: Global options that choose local backends, so make no sense with ``--url``.
LOCAL_OPTIONS = ("mode", "config", "data_dir")


def exit_code(exc: BaseException) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return 1


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, BackendUnavailable) and exc.setting == "base_url":  # the server at --url
        return str(BackendUnavailable(exc.service, exc.detail, "--url or SOMA_URL"))
    if isinstance(exc, Unauthorized):
        return f"{exc} (check --api-key or SOMA_API_KEY)"
    return str(exc)


def _check_remote(ctx: click.Context, name: str | None, command: click.Command | None) -> None:
    """With ``--url``: refuse local-only commands and options (exit 2)."""
    if command is not None and not runs_remotely(command):
        raise InvalidInput(
            "--url",
            f"soma {name} needs local mode (it runs on the backends directly); drop --url and SOMA_URL",
        )
    for option in LOCAL_OPTIONS:
        if ctx.get_parameter_source(option) is click.core.ParameterSource.COMMANDLINE:
            flag = "--" + option.replace("_", "-")
            raise InvalidInput(flag, "chooses local backends; the server at --url uses its own settings")


class SomaGroup(click.Group):
    """Runs a command, closes the memory system, and maps errors to exit codes."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        asks_help = any(arg in ctx.help_option_names for arg in rest)
        if (ctx.params.get("url") or "").strip() and not asks_help:
            _check_remote(ctx, name, command)
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            finally:
                state = ctx.find_object(State)
                if state is not None:
                    state.close()
        except BrokenPipeError as exc:  # the reader went away (`soma export - | head`): stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(exit_code(exc)) from None
        except (SFMError, OSError) as exc:
            render.error(_message(exc))
            raise click.exceptions.Exit(exit_code(exc)) from None


@click.group(cls=SomaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--mode",
    envvar="MEMORY_MODE",
    default="development",
    show_default=True,
    help="test | development | evented_enterprise | cloud_managed (env MEMORY_MODE).",
)
@click.option(
    "--namespace",
    "-n",
    envvar="SOMA_NAMESPACE",
    default="default",
    show_default=True,
    help="the memory space to act on (env SOMA_NAMESPACE).",
)
@click.option("--config", "config", default=None, help="config as inline JSON or a JSON file path.")
@click.option("--data-dir", default=None, help="where DEVELOPMENT keeps its files (env SOMA_DATA_DIR).")
@click.option("--json", "json_output", is_flag=True, help="print one JSON document on stdout.")
@click.option(
    "--url",
    envvar="SOMA_URL",
    default=None,
    metavar="URL",
    help="act on the Soma server at URL (http://HOST:PORT) instead of local backends (env SOMA_URL).",
)
@click.option(
    "--api-key",
    envvar="SOMA_API_KEY",
    default=None,
    help="API key sent to the server with --url (env SOMA_API_KEY).",
)
@click.version_option(package_name="somafractalmemory", prog_name="soma")
@click.pass_context
def cli(
    ctx: click.Context,
    mode: str,
    namespace: str,
    config: str | None,
    data_dir: str | None,
    json_output: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Soma Fractal Memory: store, recall, link and locate memories of AI agents."""
    url = (url or "").strip() or None
    if url is None and ctx.get_parameter_source("api_key") is click.core.ParameterSource.COMMANDLINE:
        raise InvalidInput("--api-key", "is sent to a server: give --url (or set SOMA_URL) too")
    source = ctx.get_parameter_source("namespace")
    ctx.obj = State(
        mode=mode,
        namespace=namespace,
        config=parse_config(config, data_dir),
        json_output=json_output,
        url=url,
        api_key=api_key or None,
        namespace_given=source is not None and source is not click.core.ParameterSource.DEFAULT,
    )


def register(group: click.Group, modules: Sequence[str] = COMMAND_MODULES) -> None:
    """Add the ``COMMANDS`` of each module to ``group``."""
    for name in modules:
        module = importlib.import_module(name)
        for command in module.COMMANDS:
            group.add_command(command)


register(cli)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``soma`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="soma")
