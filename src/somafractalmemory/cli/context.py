"""What every command shares: the invocation state, the backend seam, argument parsing.

``State`` holds the global options and builds what the commands act on once,
on first use, so ``soma --help`` never touches a backend; the group closes it
when the command ends (vectors are flushed to disk then).

Local or remote
---------------
``state.memory`` is a ``MemoryBackend``: the operations the commands share.
Locally it is the memory system itself (``SomaFractalMemoryEnterprise``);
with ``--url`` it is ``cli.remote.RemoteMemory``, which makes the same calls
over the HTTP API (through ``SomaClient``) and returns the same types, so a
command renders the same output either way. Commands that can run against a
server are marked ``@remote``; the group refuses any other command when
``--url`` is given (exit 2), so a new command is local-only until it is
marked. ``state.core`` is the local memory system, for local-only commands;
``state.server(...)`` the remote one, for server-only operations.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

import click

from ..errors import InvalidInput
from ..models import Coordinate, HistoryEntry, Link, Memory, RecallHit

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..core import SomaFractalMemoryEnterprise
    from .remote import RemoteMemory

__all__ = [
    "COORD_ARGS",
    "MemoryBackend",
    "State",
    "load_json_arg",
    "parse_config",
    "parse_filters",
    "pass_state",
    "read_text",
    "remote",
    "runs_remotely",
]

#: ``context_settings`` of commands taking positional coordinates: lets one
#: start with "-" (``soma get -1,2,3``) instead of being read as an option.
COORD_ARGS: dict[str, Any] = {"ignore_unknown_options": True}

C = TypeVar("C", bound=click.Command)
_REMOTE_FLAG = "soma_remote"


class MemoryBackend(Protocol):
    """The operations the commands share, with the memory system's signatures.

    ``SomaFractalMemoryEnterprise`` is the local implementation as it is;
    ``cli.remote.RemoteMemory`` the remote one. Arguments are positional.
    """

    @property
    def namespace(self) -> str: ...

    def store_memory(self, coordinate: Any, payload: Any, memory_type: Any, /) -> Memory: ...

    def remember(self, payload: Any, coordinate: Any, memory_type: Any, /) -> Memory: ...

    def store_memories_bulk(self, items: Iterable[Any], /) -> Sized:
        """The stored memories; a command needs only how many."""
        ...

    def get_memory(self, coordinate: Any, /) -> Memory | None: ...

    def get_versions(self, coordinate: Any, /) -> list[HistoryEntry]: ...

    def delete_many(self, coordinates: Sequence[Any], /) -> int: ...

    def find_by_coordinate_range(
        self, min_coord: Any, max_coord: Any, memory_type: Any, /
    ) -> list[Memory]: ...

    def recall(
        self,
        query: Any,
        top_k: Any,
        memory_type: Any,
        filters: Any,
        context: Mapping[str, Any] | None,
        min_score: Any,
        /,
    ) -> list[dict[str, Any]]: ...

    def recall_with_scores(
        self,
        query: Any,
        top_k: Any,
        memory_type: Any,
        filters: Any,
        context: Mapping[str, Any] | None,
        min_score: Any,
        /,
    ) -> list[RecallHit]: ...

    def recall_with_context(
        self,
        query: Any,
        context: Mapping[str, Any],
        top_k: Any,
        memory_type: Any,
        filters: Any,
        min_score: Any,
        /,
    ) -> list[RecallHit]: ...

    def recall_batch(
        self, queries: Sequence[Any], top_k: Any, memory_type: Any, filters: Any, min_score: Any, /
    ) -> list[list[dict[str, Any]]]: ...

    def link_memories(
        self, from_coord: Any, to_coord: Any, link_type: Any, weight: Any, metadata: dict[str, Any] | None, /
    ) -> Link: ...

    def get_neighbors(self, coord: Any, link_type: Any, limit: Any, direction: str, /) -> list[Link]: ...

    def find_shortest_path(
        self, from_coord: Any, to_coord: Any, link_type: Any, max_depth: int, /
    ) -> list[Coordinate]: ...

    def memory_stats(self) -> dict[str, Any]: ...

    def health_check(self) -> dict[str, dict[str, Any]]: ...

    def export_memories(self, target: str | Path | IO[str], /) -> int: ...

    def import_memories(
        self, source: IO[str], progress: Callable[[int], None] | None, /
    ) -> dict[str, int]: ...


def remote(command: C) -> C:
    """Mark a command as able to run against a server (``--url``)."""
    setattr(command, _REMOTE_FLAG, True)
    return command


def runs_remotely(command: click.Command | None) -> bool:
    return bool(getattr(command, _REMOTE_FLAG, False))


@dataclass
class State:
    """Global options of one ``soma`` invocation.

    ``url`` set means remote mode: commands act on the server there, as the
    key ``api_key`` allows, in ``namespace`` when ``namespace_given`` (else
    the server picks: the key's namespace, or its default).
    """

    mode: str
    namespace: str
    config: dict[str, Any] = field(default_factory=dict)
    json_output: bool = False
    url: str | None = None
    api_key: str | None = None
    namespace_given: bool = True
    _memory: SomaFractalMemoryEnterprise | None = None
    _remote: RemoteMemory | None = None

    @property
    def is_remote(self) -> bool:
        return self.url is not None

    @property
    def memory(self) -> MemoryBackend:
        """What the command acts on: the server with ``--url``, else the local memory system."""
        if self.url is not None:
            return self.server()
        return self.core

    @property
    def core(self) -> SomaFractalMemoryEnterprise:
        """The local memory system, created on first use (once per invocation)."""
        if self.url is not None:  # the group refuses local-only commands before this
            raise InvalidInput("--url", "this command needs local mode; drop --url (and SOMA_URL)")
        if self._memory is None:
            from ..factory import create_memory_system

            self._memory = create_memory_system(self.mode, self.namespace, self.config)
        return self._memory

    def server(self, what: str = "this command") -> RemoteMemory:
        """The server at ``--url`` (exit 2 without one: ``what`` needs a server)."""
        if self.url is None:
            raise InvalidInput("--url", f"{what} needs a server: give --url (or set SOMA_URL)")
        if self._remote is None:
            from .remote import RemoteMemory

            self._remote = RemoteMemory(
                self.url, self.api_key, self.namespace if self.namespace_given else None
            )
        return self._remote

    def close(self) -> None:
        memory, self._memory = self._memory, None
        server, self._remote = self._remote, None
        if memory is not None:
            memory.close()
        if server is not None:
            server.close()


#: Decorator: call the command with the ``State`` as first argument.
pass_state = click.make_pass_decorator(State)


def read_text(source: str, field_name: str) -> str:
    """The text of a file, or of stdin for ``-``; ``InvalidInput`` naming ``field_name`` if unreadable."""
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(field_name, f"cannot read {source!r}: {exc.strerror or exc}") from None


def load_json_arg(text: str, field_name: str) -> Any:
    """JSON given inline, or read from a file with ``@path`` (``@-`` = stdin)."""
    raw = read_text(text[1:], field_name) if text.startswith("@") else text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            field_name, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


def parse_config(value: str | None, data_dir: str | None) -> dict[str, Any]:
    """``--config`` (inline JSON object or a JSON file path) plus ``--data-dir``."""
    config: Any = {}
    if value:
        stripped = value.strip()
        inline = stripped.startswith(("{", "["))
        config = load_json_arg(stripped if inline else "@" + value, "config")
        if not isinstance(config, dict):
            raise InvalidInput("config", f"must be a JSON object, got {type(config).__name__}")
    if data_dir:
        config["data_dir"] = data_dir
    return dict(config)


def parse_filters(pairs: Sequence[str], filters_json: str | None) -> Any:
    """``--filters JSON`` merged with repeated ``--filter key=value``.

    A value is read as JSON when it parses (``5``, ``true``, ``["a","b"]``),
    otherwise it is the string itself. The core validates the result.
    """
    filters: Any = load_json_arg(filters_json, "filters") if filters_json else None
    if not pairs:
        return filters
    if filters is not None and not isinstance(filters, dict):
        raise InvalidInput("filters", f"must be a JSON object, got {type(filters).__name__}")
    merged: dict[str, Any] = dict(filters or {})
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput("filter", f"expected key=value, got {pair!r}")
        try:
            merged[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            merged[key.strip()] = raw
    return merged
