"""One SQLite connection shared by the SQLite adapters, with its lock.

The connection runs in autocommit mode (``isolation_level=None``); writes go
through :meth:`Database.write`, one ``BEGIN IMMEDIATE`` ... ``COMMIT``
transaction that is rolled back on any exception. Every call holds a
re-entrant lock, so one ``Database`` can serve many threads (the HTTP API).
Files use WAL journaling with ``synchronous=NORMAL``: a committed
transaction survives a process crash; a power loss may lose the last
transactions but never leaves one half-applied.

Driver errors are translated here: constraint violations become
``InvalidInput``, anything else (locked, disk full, closed) becomes
``BackendUnavailable``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ...errors import BackendUnavailable, ConfigurationError, InvalidInput, SFMError

__all__ = ["Database", "translate"]

SERVICE = "SQLite"
SETTING = "data_dir (SOMA_DATA_DIR)"


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

    def __init__(self, path: str | Path) -> None:
        self.path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser())
        self._lock = threading.RLock()
        self._users = 1
        conn: sqlite3.Connection | None = None
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
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

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            conn = self._require()
            try:
                conn.execute("BEGIN IMMEDIATE")
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
