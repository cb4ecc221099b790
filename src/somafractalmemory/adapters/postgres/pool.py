"""A psycopg connection pool that speaks the library's exception tree.

``PostgresPool`` wraps ``psycopg_pool.ConnectionPool``:

* opening probes the server once, so an unreachable server fails at start
  with one line (``BackendUnavailable`` naming ``POSTGRES_URL``), never a
  stack of driver errors;
* ``schema`` puts every connection's ``search_path`` on that schema (then
  ``public``, where extensions usually live);
* TLS settings (``sslmode``, ``sslrootcert``, ...) pass through from the DSN;
* every connection is checked before it is handed out, so the pool recovers
  by itself after a server restart. The check costs no round trip when the
  connection was used in the last ``CHECK_IDLE_SECONDS``: a connection the
  server closed (shutdown, restart, a killed backend) has something to read
  (the server's FATAL message, or end of file), which a zero-timeout poll of
  its socket sees; only then, or after a longer idle time (a network path
  may have dropped it silently), is a query sent to check it;
* ``connection()`` translates every driver error at the boundary.
"""

from __future__ import annotations

import json
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from ...errors import (
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    InvalidInput,
    MissingDependency,
    SFMError,
)

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg import sql
    from psycopg.types.json import set_json_loads
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("psycopg", "postgres") from exc

__all__ = ["PostgresPool", "normalize_url", "translate_error"]

SERVICE = "PostgreSQL"
SETTING = "POSTGRES_URL"
#: A connection idle longer than this is checked with a query before use.
CHECK_IDLE_SECONDS = 5.0
_HAS_POLL = hasattr(select, "poll")  # not on Windows: a query checks every connection there

Connection = psycopg.Connection[Any]


def normalize_url(url: str) -> str:
    """Accept ``postgres://`` and SQLAlchemy-style ``postgresql+psycopg://`` URLs."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


_scan_json: Callable[[str, int], tuple[Any, int]] = cast(Any, json.JSONDecoder()).scan_once


def loads_json(data: Any) -> Any:
    """``json.loads`` for ``json``/``jsonb`` columns, without its per-call
    overhead (encoding detection, whitespace regexes): the server's text has
    no surrounding whitespace, so the C scanner alone reads it; anything
    else goes to ``json.loads``. 2-3 times faster on small payloads."""
    text = str(data, "utf-8")
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # libpq repeats "connection to server at ... failed" per address; keep the first.
    return lines[0] if lines else type(exc).__name__


def translate_error(exc: BaseException) -> SFMError:
    """Map a driver error to the library's exception tree.

    Bad data is ``InvalidInput``; a duplicate key, a deadlock or a
    serialization failure ``Conflict`` (retry); a missing table or a missing
    privilege ``ConfigurationError`` (run the migrations, fix the grants);
    everything else, above all a lost or refused connection, is
    ``BackendUnavailable``.
    """
    if isinstance(exc, SFMError):
        return exc
    detail = _first_line(exc)
    if isinstance(exc, (pg_errors.UndefinedTable, pg_errors.UndefinedFunction, pg_errors.UndefinedObject)):
        return ConfigurationError(f"{SERVICE} schema is not ready ({detail}); run `soma migrate`")
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return ConfigurationError(f"{SERVICE}: {detail}")
    if isinstance(
        exc, (pg_errors.UniqueViolation, pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
    ):
        return Conflict(f"{SERVICE}: {detail}")
    if isinstance(exc, (pg_errors.DataError, pg_errors.IntegrityError)):
        extra = getattr(getattr(exc, "diag", None), "message_detail", None)
        return InvalidInput(
            "payload", f"{SERVICE} rejected the data: {detail}" + (f" ({extra})" if extra else "")
        )
    if isinstance(exc, UnicodeError):
        return InvalidInput("payload", f"text is not valid Unicode: {detail}")
    return BackendUnavailable(SERVICE, detail, setting=SETTING)


def _check(conn: Connection) -> None:
    """The pool's check before it hands ``conn`` out (see the module docstring)."""
    used_at: float = getattr(conn, "_soma_used_at", 0.0)
    if _HAS_POLL and time.monotonic() - used_at < CHECK_IDLE_SECONDS and not conn.closed:
        try:
            poller = select.poll()
            poller.register(conn.pgconn.socket, select.POLLIN)
            readable = bool(poller.poll(0))
        except (OSError, ValueError, psycopg.Error):
            readable = True
        if not readable:
            return  # nothing from the server while idle: the connection is as we left it
    ConnectionPool.check_connection(conn)


class PostgresPool:
    """A pool of autocommit connections to one database (and schema).

    Writers open explicit transactions (``conn.transaction()``) or send a
    single statement; readers never leave a transaction open.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        connect_timeout: float = 5.0,
        reconnect_timeout: float = 300.0,
        name: str = "somafractalmemory",
    ) -> None:
        if min_size < 0 or max_size < max(1, min_size):
            raise ConfigurationError(f"invalid pool size: min_size={min_size}, max_size={max_size}")
        self.schema = schema
        self._conninfo = normalize_url(url)
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(connect_timeout)),
            "application_name": name,
        }
        self._closed = False
        self._lock = threading.Lock()
        self._probe()
        self._pool = ConnectionPool(
            self._conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=self._kwargs,
            configure=self._configure,
            check=_check,
            timeout=timeout,
            reconnect_timeout=reconnect_timeout,
            name=name,
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=max(timeout, connect_timeout))
        except (psycopg.Error, SFMError) as exc:
            self._pool.close(timeout=0)
            raise BackendUnavailable(SERVICE, _first_line(exc), setting=SETTING) from None

    # -- lifecycle --------------------------------------------------------
    def _probe(self) -> None:
        """Connect once, so a wrong URL or a down server fails with one line."""
        try:
            with psycopg.connect(self._conninfo, **self._kwargs) as conn:
                conn.execute("SELECT 1")
        except (psycopg.Error, UnicodeError) as exc:
            raise BackendUnavailable(SERVICE, _first_line(exc), setting=SETTING) from None

    def _configure(self, conn: Connection) -> None:
        set_json_loads(loads_json, conn)
        if self.schema is not None:
            conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(self.schema)))

    def close(self) -> None:
        """Close every connection; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- use --------------------------------------------------------------
    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection; driver errors leave as ``SFMError``s."""
        if self._closed:
            raise BackendUnavailable(SERVICE, "the connection pool is closed", setting=SETTING)
        try:
            with self._pool.connection() as conn:
                try:
                    yield conn
                finally:
                    conn._soma_used_at = time.monotonic()  # type: ignore[attr-defined]
        except (psycopg.Error, UnicodeError) as exc:
            raise translate_error(exc) from exc

    def health(self) -> None:
        """Return quietly when the server answers a query, else raise."""
        with self.connection() as conn:
            conn.execute("SELECT 1").fetchone()

    def stats(self) -> dict[str, int]:
        """Pool counters (size, available, waiting, ...)."""
        return {k: int(v) for k, v in self._pool.get_stats().items()}
