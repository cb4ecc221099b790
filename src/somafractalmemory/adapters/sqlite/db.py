"""One SQLite connection shared by the SQLite adapters, with its lock.

The connection runs in autocommit mode (``isolation_level=None``); writes go
through :meth:`Database.write`, one ``BEGIN IMMEDIATE`` ... ``COMMIT``
transaction that is rolled back on any exception. Every call holds a
re-entrant lock, so one ``Database`` can serve many threads (the HTTP API).

Files use WAL journaling with ``synchronous=NORMAL``: a committed
transaction survives a process crash; a power loss may lose the last
transactions but never leaves one half-applied.

Several processes may share a file (``soma serve`` runs two workers).
Statements wait for a lock with SQLite's busy handler (``timeout``, 10 s),
whose first sleep is a whole millisecond, while the other process's write
transaction usually ends within a fraction of one. So ``BEGIN IMMEDIATE``,
where writers queue, runs with the busy handler off and is retried after
sleeps of 50 µs, doubling up to 2 ms, until the same deadline; then it
fails as the busy handler would have ("database is locked").

Driver errors are translated here: constraint violations become
``InvalidInput``, anything else (locked, disk full, closed) becomes
``BackendUnavailable``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pydantic_core import from_json

from ...errors import BackendUnavailable, ConfigurationError, InvalidInput, SFMError

__all__ = ["Database", "loads", "translate"]

SERVICE = "SQLite"
SETTING = "data_dir (SOMA_DATA_DIR)"

#: The first and the longest sleep between attempts to begin a write transaction.
FIRST_RETRY_SLEEP = 50e-6
MAX_RETRY_SLEEP = 2e-3


def loads(text: str) -> Any:
    """``json.loads`` for the JSON columns, 3 to 5 times faster.

    ``pydantic_core.from_json`` (a dependency of pydantic) returns the same
    values and types for what ``json.dumps`` writes (floats to the bit, big
    integers, key order); what it refuses (nesting deeper than 200, escaped
    lone surrogates) goes to ``json.loads``. Hot loops call ``from_json``
    directly and fall back to this function on ``ValueError``.
    """
    try:
        return from_json(text)
    except ValueError:
        return json.loads(text)


def translate(exc: BaseException) -> SFMError:
    """The library error for a driver error."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError)):
        return InvalidInput("batch", f"rejected by the database: {exc}")
    return BackendUnavailable(SERVICE, str(exc), setting=SETTING)


class Database:
    """A SQLite database file (or ``":memory:"``) opened once, shared by adapters.

    Adapters that share it call :meth:`retain`; each ``close`` releases one
    user and the connection closes with the last one.
    """

    def __init__(self, path: str | Path, *, timeout: float = 10.0) -> None:
        self.path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser())
        self.timeout = float(timeout)  # seconds a statement or a writer waits for a lock
        self._busy_timeout = f"PRAGMA busy_timeout = {max(0, int(self.timeout * 1000))}"
        self._lock = threading.RLock()
        self._users = 1
        conn: sqlite3.Connection | None = None
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            for pragma in (
                "journal_mode=WAL",
                "synchronous=NORMAL",
                "temp_store=MEMORY",
                "cache_size=-65536",
            ):
                conn.execute(f"PRAGMA {pragma}")
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise BackendUnavailable(SERVICE, f"cannot open {self.path}: {exc}", setting=SETTING) from exc
        self._conn: sqlite3.Connection | None = conn

    def retain(self) -> Database:
        with self._lock:
            self._require()
            self._users += 1
        return self

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BackendUnavailable(SERVICE, f"{self.path} is closed", setting=SETTING)
        return self._conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection, locked, for statements that need no transaction."""
        with self._lock:
            conn = self._require()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise translate(exc) from exc

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one read statement: :meth:`read` without the context manager."""
        with self._lock:
            conn = self._require()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate(exc) from exc

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            conn = self._require()
            try:
                self._begin(conn)
            except sqlite3.Error as exc:
                raise translate(exc) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise translate(exc) from exc
                raise

    def _begin(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE`` with the busy handler off, retried after short
        sleeps while another connection holds the write lock, for at most
        ``timeout`` seconds from the first refusal. The busy timeout is back
        on for the statements of the transaction (in rollback-journal mode a
        commit waits for readers)."""
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            deadline: float | None = None
            pause = FIRST_RETRY_SLEEP
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                        raise
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + self.timeout
                    if now >= deadline:
                        raise
                time.sleep(min(pause, deadline - now))
                pause = min(2 * pause, MAX_RETRY_SLEEP)
        except BaseException:
            conn.execute(self._busy_timeout)
            raise
        try:
            conn.execute(self._busy_timeout)
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")  # the transaction just begun
            raise

    def migrate(self, component: str, version: int, statements: str) -> None:
        """Create the tables of ``component`` (an idempotent ``IF NOT EXISTS``
        script) and record its schema ``version`` in ``sfm_schema``; a file
        written by another schema version is refused rather than misread."""
        with self._lock:
            conn = self._require()
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS sfm_schema (component TEXT PRIMARY KEY, version INTEGER)"
                )
                row = conn.execute(
                    "SELECT version FROM sfm_schema WHERE component = ?", (component,)
                ).fetchone()
                if row is not None and row[0] != version:
                    raise ConfigurationError(
                        f"{self.path} holds {component} schema version {row[0]}; this version of the "
                        f"library reads version {version} (export with the old version, then import)"
                    )
                record = f"INSERT OR IGNORE INTO sfm_schema VALUES ('{component}', {int(version)});"
                conn.executescript(f"BEGIN IMMEDIATE;\n{statements}\n{record}\nCOMMIT;")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise BackendUnavailable(
                    SERVICE, f"cannot create the {component} schema: {exc}", setting=SETTING
                ) from exc

    def health(self) -> None:
        with self.read() as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            self._users -= 1
            if self._users > 0:
                return
            conn, self._conn = self._conn, None
            with suppress(sqlite3.Error):
                conn.close()
