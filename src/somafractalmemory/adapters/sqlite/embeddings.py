"""``SQLiteEmbeddingStore`` (``IEmbeddingStore``): vectors beside the memories.

One row per memory in ``memory_embeddings`` (its version, the embedder's
model id and the float32 vector as a blob), in the canonical store's
database file, so every process sharing the file reuses a vector instead of
embedding the text again. A row is written only while the memory exists at
that version, and a trigger deletes it with the memory (in the deleting
transaction): the table never holds vectors of deleted memories.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...interfaces.storage import Vector
from .db import Database
from .links import chunks

__all__ = ["SQLiteEmbeddingStore"]

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_embeddings (
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (namespace, id)
);
CREATE TRIGGER IF NOT EXISTS memories_drop_embedding AFTER DELETE ON memories BEGIN
    DELETE FROM memory_embeddings WHERE namespace = old.namespace AND id = old.id;
END;
"""

_PUT = (
    "INSERT INTO memory_embeddings (namespace, id, model, version, vector) "
    "SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS "
    "(SELECT 1 FROM memories WHERE namespace = ?1 AND id = ?2 AND version = ?4) "
    "ON CONFLICT (namespace, id) DO UPDATE SET "
    "model = excluded.model, version = excluded.version, vector = excluded.vector"
)


class SQLiteEmbeddingStore:
    """Embeddings in the canonical store's SQLite file.

    Pass the store's ``database`` (``SQLiteStore.database``): the table's
    trigger needs its ``memories`` table.
    """

    name = "sqlite"

    def __init__(self, path: str | Path = ":memory:", *, database: Database | None = None) -> None:
        self._db = database.retain() if database is not None else Database(path)
        self._closed = False
        try:
            self._db.migrate("embeddings", SCHEMA_VERSION, SCHEMA)
        except BaseException:
            self._db.close()
            raise

    def put(self, namespace: str, model_id: str, rows: Sequence[tuple[str, int, Vector]]) -> None:
        if not rows:
            return
        params = [
            (namespace, mid, model_id, int(version), np.ascontiguousarray(vector, dtype=np.float32).tobytes())
            for mid, version, vector in rows
        ]
        with self._db.write() as conn:
            conn.executemany(_PUT, params)

    def get(self, namespace: str, model_id: str, ids: Sequence[str]) -> dict[str, tuple[int, Vector]]:
        out: dict[str, tuple[int, Vector]] = {}
        wanted = list(dict.fromkeys(ids))
        with self._db.read() as conn:
            for part in chunks(wanted):
                sql = (
                    "SELECT id, version, vector FROM memory_embeddings WHERE namespace = ? AND model = ? "
                    f"AND id IN ({','.join('?' * len(part))})"
                )
                for mid, version, blob in conn.execute(sql, (namespace, model_id, *part)):
                    out[mid] = (int(version), np.frombuffer(blob, dtype=np.float32))
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()
