"""Embedded keyword index (``IKeywordIndex``) on SQLite FTS5.

Each namespace has its own FTS5 table (``kw_fts_<hash>``), so document
counts and term statistics, hence scores, are per namespace as on every
other backend. A document's row holds the space-joined output of
``text.tokenize`` (the FTS5 tokenizer only splits on those spaces again,
keeping ``_`` inside words), and a query is the OR of its quoted tokens.
``score = -bm25()`` (FTS5's BM25 with k1=1.2, b=0.75; higher is better,
always > 0 for a match).

``kw_docs`` maps ``(namespace, id)`` to the FTS5 rowid. The index may live
in its own file or share the store's: pass ``database=store.database`` to
use ``SQLiteStore``'s connection (its tables are prefixed ``kw_``). It is a
derived index: it can always be rebuilt from the canonical store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ...text import tokenize
from .db import Database
from .links import chunks

__all__ = ["SQLiteKeywordIndex"]

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS kw_docs (
    rid INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    UNIQUE (namespace, id)
);
CREATE TABLE IF NOT EXISTS kw_tables (namespace TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);
"""


def _table_name(namespace: str) -> str:
    return "kw_fts_" + hashlib.sha1(namespace.encode()).hexdigest()[:24]


class SQLiteKeywordIndex:
    """BM25 keyword search over FTS5 tables, one per namespace."""

    name = "sqlite"

    def __init__(self, path: str | Path = ":memory:", *, database: Database | None = None) -> None:
        self._db = database.retain() if database is not None else Database(path)
        self._closed = False
        try:
            self._db.migrate("keyword", SCHEMA_VERSION, SCHEMA)
        except BaseException:
            self._db.close()
            raise
        self._known: set[str] = set()

    def _table(self, namespace: str, create: bool) -> str | None:
        name = _table_name(namespace)
        if name in self._known:
            return name
        with self._db.read() as conn:
            exists = conn.execute("SELECT 1 FROM kw_tables WHERE namespace = ?", (namespace,)).fetchone()
            if exists is None:
                if not create:
                    return None
                # Called inside the caller's write transaction.
                conn.execute(
                    f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5("
                    "terms, tokenize = \"unicode61 remove_diacritics 0 tokenchars '_'\")"
                )
                conn.execute("INSERT INTO kw_tables (namespace, name) VALUES (?, ?)", (namespace, name))
                return name  # remembered once it is seen committed
        self._known.add(name)
        return name

    def _rids(self, namespace: str, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._db.read() as conn:
            for part in chunks(list(ids)):
                sql = (
                    f"SELECT id, rid FROM kw_docs WHERE namespace = ? AND id IN ({','.join('?' * len(part))})"
                )
                out.update(conn.execute(sql, (namespace, *part)).fetchall())
        return out

    def index(self, namespace: str, docs: Sequence[tuple[str, str]]) -> None:
        latest = {doc_id: " ".join(tokenize(text)) for doc_id, text in docs}  # last text of an id wins
        if not latest:
            return
        with self._db.write() as conn:
            table = self._table(namespace, create=True)
            conn.executemany(
                "INSERT INTO kw_docs (namespace, id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(namespace, doc_id) for doc_id in latest],
            )
            rids = self._rids(namespace, list(latest))
            conn.executemany(  # REPLACE drops the previous text of the same rowid
                f"INSERT OR REPLACE INTO {table} (rowid, terms) VALUES (?, ?)",
                [(rids[doc_id], terms) for doc_id, terms in latest.items()],
            )

    def remove(self, namespace: str, ids: Sequence[str]) -> None:
        with self._db.write() as conn:
            table = self._table(namespace, create=False)
            if table is None:
                return
            rids = self._rids(namespace, ids)
            conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(rid,) for rid in rids.values()])
            conn.executemany("DELETE FROM kw_docs WHERE rid = ?", [(rid,) for rid in rids.values()])

    def search(self, namespace: str, query: str, limit: int) -> list[tuple[str, float]]:
        terms = sorted(set(tokenize(query)))
        if not terms or limit <= 0:
            return []
        table = self._table(namespace, create=False)
        if table is None:
            return []
        match = " OR ".join(f'"{t}"' for t in terms)
        # Rank inside FTS5 first, then map the few best rowids to ids (ties: by id).
        sql = (
            f"SELECT d.id, -hit.score FROM (SELECT rowid AS rid, bm25({table}) AS score FROM {table} "
            f"WHERE {table} MATCH ? ORDER BY score LIMIT ?) AS hit JOIN kw_docs AS d ON d.rid = hit.rid "
            "ORDER BY hit.score, d.id"
        )
        with self._db.read() as conn:
            rows = conn.execute(sql, (match, limit)).fetchall()
        return [(doc_id, float(score)) for doc_id, score in rows if score > 0]

    def count(self, namespace: str) -> int:
        with self._db.read() as conn:
            row = conn.execute("SELECT count(*) FROM kw_docs WHERE namespace = ?", (namespace,)).fetchone()
        return int(row[0])

    def health(self) -> None:
        self._db.health()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()
