"""Versioned schema migrations for the PostgreSQL adapters.

``MIGRATIONS`` is an ordered list of ``(version, description, sql)``; a
version, once released, never changes: a schema change is a new entry.
``migrate(pool)`` applies the missing ones, each in its own transaction under
a database-wide advisory lock (so concurrent starts take turns), records
them in ``schema_migrations`` and returns the versions it applied: running it
twice is a no-op.

Tables (in the pool's schema):

* ``memories``: one row per memory; ``coordinate`` (``float8[]``) is the
  address; ``payload`` is JSONB with a GIN index for filters; timestamps
  are epoch seconds (``float8``, exact round trip). Range queries are served
  by a GiST index on ``(namespace, ndim, coord_point, point(c2, c3))`` where
  ``coord_point`` is the built-in ``point`` of the first two dimensions
  (``(c0, 0)`` in 1-D) and the second point that of the next two (0 where
  missing; migration 6: before it, a 3-D box read every layer of its
  first two dimensions, 40 times the rows it returned at 100,000 memories);
  the index narrows the candidates, an exact per-dimension comparison
  decides. The ``btree_gist`` extension (trusted, in ``contrib``) puts the
  namespace into the same GiST index.

  Why not ``cube``: the ``cube`` extension (GiST over n-D boxes) looks made
  for this, but its GiST index degrades catastrophically when coordinates
  arrive in increasing order (a timeline ``(t,)``, or a diagonal
  ``(i, i)``): inserting 2,000 such rows took 65 s, and building the index
  over 100,000 took more than ten minutes. The built-in ``point`` GiST index has none of that (over
  40,000 such rows per second) and writes twice as fast on random data;
  dimensions past the fourth are checked, not indexed.
* ``memory_history``: append-only change records, ordered by
  ``(changed_at, seq)``.
* ``links``: directed typed weighted edges, keyed by
  ``(namespace, from_id, to_id, link_type)``.
* ``keyword_docs``: the keyword index: a ``tsvector`` per document built
  from the shared tokenizer's tokens (never re-parsed by a text-search
  configuration), with its length for BM25, and a GIN index.
* ``memory_changes``: the change feed, one row per memory written or
  deleted, appended by statement-level triggers on ``memories`` with the
  writing transaction's id (see ``changes.py``); ``memory_change_feed``
  names the feed; ``memory_change_floor`` holds the newest transaction id
  pruned from it.
* ``outbox``: events committed in the same transaction as their writes
  (``event`` JSONB, ``key`` = memory id), published by the relay, which sets
  ``sent_at`` (partial indexes on the unsent and on ``sent_at``).

Ids and namespaces use the ``"C"`` collation, so they order bytewise (as
Python orders strings) whatever the database's locale. On a managed service
where the migration may not create ``btree_gist``, ask the operator to run
``CREATE EXTENSION btree_gist;`` once.
"""

from __future__ import annotations

from psycopg import errors as pg_errors
from psycopg import sql

from ...errors import ConfigurationError
from .pool import PostgresPool

__all__ = ["MIGRATIONS", "applied_versions", "migrate"]

#: Key of the advisory lock that serialises migrations in a database.
LOCK_KEY = 0x50F4_F2AC_7A1D

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "memories and their history",
        """
        CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;

        CREATE TABLE memories (
            namespace   text        COLLATE "C" NOT NULL,
            id          text        COLLATE "C" NOT NULL,
            coordinate  float8[]    NOT NULL
                        CHECK (array_ndims(coordinate) = 1 AND cardinality(coordinate) <= 16),
            ndim        smallint    GENERATED ALWAYS AS (cardinality(coordinate)) STORED,
            coord_point point       GENERATED ALWAYS AS
                                    (point(coordinate[1], coalesce(coordinate[2], 0))) STORED,
            payload     jsonb       NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
            memory_type text        NOT NULL CHECK (memory_type IN ('episodic', 'semantic')),
            importance  float8      NOT NULL DEFAULT 1,
            created_at  float8      NOT NULL,
            updated_at  float8      NOT NULL,
            version     integer     NOT NULL DEFAULT 1,
            PRIMARY KEY (namespace, id)
        );
        CREATE INDEX memories_coord_gist ON memories USING gist (namespace, ndim, coord_point);
        CREATE INDEX memories_created ON memories (namespace, created_at, id);
        CREATE INDEX memories_updated ON memories (namespace, updated_at DESC, id);
        CREATE INDEX memories_importance ON memories (namespace, importance DESC, updated_at DESC, id);
        CREATE INDEX memories_payload_gin ON memories USING gin (payload jsonb_path_ops);

        CREATE TABLE memory_history (
            seq          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            namespace    text    COLLATE "C" NOT NULL,
            memory_id    text    COLLATE "C" NOT NULL,
            coordinate   float8[] NOT NULL,
            version      integer NOT NULL,
            action       text    NOT NULL CHECK (action IN ('created', 'updated', 'deleted')),
            payload      jsonb,
            memory_type  text    CHECK (memory_type IN ('episodic', 'semantic')),
            changed_at   float8  NOT NULL,
            actor        text    NOT NULL,
            changed_keys jsonb   NOT NULL DEFAULT '[]'
        );
        CREATE INDEX memory_history_memory ON memory_history (namespace, memory_id, changed_at, seq);
        CREATE INDEX memory_history_namespace ON memory_history (namespace, changed_at, seq);
        """,
    ),
    (
        2,
        "links between memories",
        """
        CREATE TABLE links (
            namespace  text     COLLATE "C" NOT NULL,
            from_id    text     COLLATE "C" NOT NULL,
            to_id      text     COLLATE "C" NOT NULL,
            link_type  text     COLLATE "C" NOT NULL,
            from_coord float8[] NOT NULL,
            to_coord   float8[] NOT NULL,
            weight     float8   NOT NULL,
            metadata   jsonb    NOT NULL DEFAULT '{}',
            created_at float8   NOT NULL,
            seq        bigint   GENERATED ALWAYS AS IDENTITY,
            PRIMARY KEY (namespace, from_id, to_id, link_type)
        );
        CREATE INDEX links_to ON links (namespace, to_id);
        CREATE INDEX links_seq ON links (namespace, seq);
        """,
    ),
    (
        3,
        "keyword index",
        """
        CREATE TABLE keyword_docs (
            namespace text     COLLATE "C" NOT NULL,
            id        text     COLLATE "C" NOT NULL,
            tsv       tsvector NOT NULL,
            doc_len   integer  NOT NULL,
            PRIMARY KEY (namespace, id)
        );
        CREATE INDEX keyword_docs_tsv ON keyword_docs USING gin (tsv);
        """,
    ),
    (
        4,
        "transactional outbox of events",
        """
        CREATE TABLE outbox (
            id         bigserial   PRIMARY KEY,
            event      jsonb       NOT NULL,
            key        text        NOT NULL,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            sent_at    timestamptz
        );
        CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
        CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
        """,
    ),
    (
        5,
        "change feed of memories",
        """
        CREATE TABLE memory_changes (
            seq       bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            xid       xid8    NOT NULL DEFAULT pg_current_xact_id(),
            namespace text    COLLATE "C" NOT NULL,
            id        text    COLLATE "C" NOT NULL,
            version   integer NOT NULL,
            action    text    NOT NULL
        );
        CREATE INDEX memory_changes_xid ON memory_changes (xid, seq);
        CREATE TABLE memory_change_feed (id text NOT NULL);
        INSERT INTO memory_change_feed (id) VALUES (gen_random_uuid()::text);

        CREATE FUNCTION memory_changes_written() RETURNS trigger LANGUAGE plpgsql
        SET search_path FROM CURRENT AS $$
        BEGIN
            INSERT INTO memory_changes (namespace, id, version, action)
            SELECT namespace, id, version, CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END
            FROM new_rows ORDER BY namespace, id;
            RETURN NULL;
        END $$;
        CREATE FUNCTION memory_changes_deleted() RETURNS trigger LANGUAGE plpgsql
        SET search_path FROM CURRENT AS $$
        BEGIN
            INSERT INTO memory_changes (namespace, id, version, action)
            SELECT namespace, id, version, 'deleted' FROM old_rows ORDER BY namespace, id;
            RETURN NULL;
        END $$;
        CREATE TRIGGER memories_change_insert AFTER INSERT ON memories
            REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION memory_changes_written();
        CREATE TRIGGER memories_change_update AFTER UPDATE ON memories
            REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION memory_changes_written();
        CREATE TRIGGER memories_change_delete AFTER DELETE ON memories
            REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION memory_changes_deleted();
        """,
    ),
    (
        6,
        "range index over the first four dimensions",
        # An expression (no table rewrite); ``memories.COORD_POINT_34`` must
        # stay the same text, or the planner no longer matches it.
        """
        CREATE INDEX memories_coord_gist_4d ON memories USING gist
            (namespace, ndim, coord_point, point(coalesce(coordinate[3], 0), coalesce(coordinate[4], 0)));
        DROP INDEX memories_coord_gist;
        """,
    ),
    (
        7,
        "change feed floor",
        """
        CREATE TABLE memory_change_floor (floor xid8 NOT NULL);
        INSERT INTO memory_change_floor (floor) VALUES ('0'::xid8);
        """,
    ),
    (
        8,
        "write conflicts",
        # A store writes each memory only over the version it read
        # (``memories._GUARD``); this fails the statement, and with it the
        # whole batch, when some were not (SQLSTATE 40001: retry).
        """
        CREATE FUNCTION soma_expect_written(expected bigint, written bigint) RETURNS bigint
        LANGUAGE plpgsql AS $$
        BEGIN
            IF written <> expected THEN
                RAISE EXCEPTION 'write conflict: % of % memories were at the version the write read',
                    written, expected USING ERRCODE = '40001';
            END IF;
            RETURN written;
        END $$;
        """,
    ),
]

_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    description text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


def applied_versions(pool: PostgresPool) -> list[int]:
    """Versions recorded in ``schema_migrations`` (empty before the first run)."""
    with pool.connection() as conn:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() in (None, (None,)):
            return []
        return [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def migrate(pool: PostgresPool) -> list[int]:
    """Apply the missing migrations in order; return the versions applied."""
    applied: list[int] = []
    with pool.connection() as conn:
        for version, description, statements in MIGRATIONS:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
                    if pool.schema is not None:
                        conn.execute(
                            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(pool.schema))
                        )
                    conn.execute(_TABLE)
                    done = conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", [version])
                    if done.fetchone() is not None:
                        continue
                    conn.execute(statements.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                        [version, description],
                    )
            except (pg_errors.FeatureNotSupported, pg_errors.UndefinedFile) as exc:
                raise ConfigurationError(
                    "PostgreSQL: the btree_gist extension is required and not available "
                    f"({str(exc).strip()}); install the server's contrib package"
                ) from None
            except pg_errors.InsufficientPrivilege as exc:
                raise ConfigurationError(
                    f"PostgreSQL: not allowed to migrate ({str(exc).strip()}); run `soma migrate` as the "
                    "database owner, or have it run CREATE EXTENSION btree_gist"
                ) from None
            applied.append(version)
    return applied
