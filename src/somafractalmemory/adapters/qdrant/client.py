"""Connection settings for Qdrant and the translation of its errors.

One adapter serves every deployment, chosen by exactly one of:

* ``url`` (``http(s)://host:port``, Qdrant Cloud included) or ``host`` +
  ``port``: a Qdrant server, optionally with ``api_key``, ``https``,
  ``verify`` (False or a CA bundle path) and ``prefer_grpc``;
* ``path``: Qdrant's local mode, persisted in that directory (one process
  at a time);
* ``location=":memory:"``: local mode in memory (tests).

Driver exceptions (HTTP status, httpx transport, gRPC, socket errors) become
``BackendUnavailable`` naming the setting to check.
"""

from __future__ import annotations

import importlib
import math
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any

from ...errors import BackendUnavailable, ConfigurationError, MissingDependency, SFMError

try:
    import httpx
    from qdrant_client import QdrantClient
    from qdrant_client.http.exceptions import ApiException, UnexpectedResponse
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise MissingDependency("qdrant-client", "qdrant") from exc

__all__ = ["SERVER_SETTING", "Connection", "connect"]

SERVER_SETTING = "QDRANT_URL / QDRANT_HOST"
PATH_SETTING = "QDRANT_PATH"
KEY_SETTING = "QDRANT_API_KEY"
MEMORY = ":memory:"


def _driver_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ApiException, httpx.HTTPError, OSError, sqlite3.Error]
    with suppress(ImportError):  # gRPC is only needed with prefer_grpc
        errors.append(importlib.import_module("grpc").RpcError)
    return tuple(errors)


_DRIVER_ERRORS = _driver_errors()


@dataclass(slots=True)
class Connection:
    """A client plus what is needed to use it safely and explain its failures."""

    client: QdrantClient
    local: bool
    setting: str
    target: str
    _lock: threading.RLock | None = None

    @contextmanager
    def call(self, what: str) -> Iterator[None]:
        """Run one driver call: serialised in local mode (not thread-safe),
        with driver errors translated."""
        with self._lock if self._lock is not None else nullcontext():
            try:
                yield
            except SFMError:
                raise
            except _DRIVER_ERRORS as exc:
                raise self.unavailable(what, exc) from exc

    def unavailable(self, what: str, exc: BaseException) -> BackendUnavailable:
        setting = self.setting
        if isinstance(exc, UnexpectedResponse):
            if exc.status_code in (401, 403):
                setting = KEY_SETTING
            detail = f"{what} at {self.target}: HTTP {exc.status_code} {exc.reason_phrase}".rstrip()
        else:
            first = str(exc).strip().splitlines()
            detail = f"{what} at {self.target}: {type(exc).__name__}" + (f": {first[0]}" if first else "")
        return BackendUnavailable("Qdrant", detail, setting=setting)


def connect(
    *,
    url: str | None,
    host: str | None,
    port: int,
    grpc_port: int,
    path: str | os.PathLike[str] | None,
    location: str | None,
    api_key: str | None,
    https: bool | None,
    verify: bool | str,
    prefer_grpc: bool,
    timeout: float,
) -> Connection:
    """Validate the settings and open a client (no request is made yet)."""
    chosen = [
        name
        for name, value in (("url", url), ("host", host), ("path", path), ("location", location))
        if value is not None
    ]
    if len(chosen) != 1:
        got = ", ".join(chosen) if chosen else "none"
        raise ConfigurationError(f"Qdrant needs exactly one of url, host, path or location (got {got})")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ConfigurationError(f"Qdrant timeout must be a positive number of seconds, got {timeout!r}")
    if path is not None or location is not None:
        for option, given in (("api_key", api_key), ("https", https), ("prefer_grpc", prefer_grpc or None)):
            if given is not None:
                raise ConfigurationError(f"Qdrant {option} needs a server (url or host), not local mode")
        return _local(path, location)
    for option, number in (("port", port), ("grpc_port", grpc_port)):
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
            raise ConfigurationError(f"Qdrant {option} must be 1-65535, got {number!r}")
    if url is not None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"QDRANT_URL must start with http:// or https://, got {url!r}")
        target = url
    else:
        if not isinstance(host, str) or not host.strip() or "://" in host or "/" in host:
            raise ConfigurationError(f"QDRANT_HOST must be a host name without scheme or path, got {host!r}")
        target = f"{host}:{port}"
    options: dict[str, Any] = {}
    if verify is not True:
        options["verify"] = verify
    try:
        client = QdrantClient(
            url=url,
            host=host,
            port=port,
            grpc_port=grpc_port,
            api_key=api_key,
            https=https,
            prefer_grpc=prefer_grpc,
            timeout=math.ceil(timeout),
            check_compatibility=False,
            **options,
        )
    except ValueError as exc:  # the driver's own checks of url / host
        raise ConfigurationError(f"Qdrant settings rejected: {exc}") from exc
    return Connection(client, False, SERVER_SETTING, target)


def _local(path: str | os.PathLike[str] | None, location: str | None) -> Connection:
    if location is not None:
        if location != MEMORY:
            raise ConfigurationError(
                f"Qdrant location must be {MEMORY!r} (use url for a server), got {location!r}"
            )
        return Connection(QdrantClient(location=MEMORY), True, "qdrant.location", MEMORY, threading.RLock())
    where = os.fspath(path) if path is not None else ""
    if not where:
        raise ConfigurationError("Qdrant path must be a directory name")
    try:
        client = QdrantClient(path=where, force_disable_check_same_thread=True)
    except RuntimeError as exc:  # the directory is locked by another client
        raise BackendUnavailable("Qdrant", str(exc), setting=PATH_SETTING) from exc
    except OSError as exc:
        raise BackendUnavailable("Qdrant", f"cannot open {where}: {exc}", setting=PATH_SETTING) from exc
    return Connection(client, True, PATH_SETTING, where, threading.RLock())
