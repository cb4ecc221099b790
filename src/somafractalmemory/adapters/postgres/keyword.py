"""``PostgresKeywordIndex``: Okapi BM25 over PostgreSQL full-text search.

Documents are tokenized by the shared ``text.tokenize`` and stored in
``keyword_docs`` as a ``tsvector`` built directly from those tokens (no
text-search configuration re-parses them, so every backend indexes the same
terms), with a GIN index. A lexeme's positions are ``1..tf``: they carry the
term frequency (capped at 256, the ``tsvector`` limit), not word positions.

A search is the OR of the query's terms (served by the GIN index), scored in
SQL with the same formula as the in-process index::

    score = sum over query terms t in d of
            idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avgdl))
    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))      k1 = 1.2, b = 0.75

with ``N``, ``df`` and ``avgdl`` taken over the namespace; ties by id.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from ...text import tokenize
from .pool import PostgresPool
from .rows import dumps

__all__ = ["PostgresKeywordIndex"]

K1 = 1.2
B = 0.75
MAX_TF = 256
MAX_LEXEME_BYTES = 2046
#: Seconds the document count and mean length of a namespace are cached.
STATS_TTL = 10.0

_INDEX = """
INSERT INTO keyword_docs (namespace, id, tsv, doc_len)
SELECT %s, x.id, x.tsv::tsvector, x.doc_len
FROM json_to_recordset(%s::json) AS x(id text, tsv text, doc_len int)
ON CONFLICT (namespace, id) DO UPDATE SET tsv = EXCLUDED.tsv, doc_len = EXCLUDED.doc_len
"""

# Every document holding a query term matches the OR query, so a term's
# document frequency is its number of hits: no extra pass per term.
_SEARCH = """
WITH stats AS MATERIALIZED (
    SELECT %(n)s::float8 AS n, %(avgdl)s::float8 AS avgdl
), hits AS MATERIALIZED (
    SELECT d.id, d.doc_len::float8 AS doc_len, u.lexeme, cardinality(u.positions)::float8 AS tf
    FROM keyword_docs d CROSS JOIN LATERAL unnest(d.tsv) AS u(lexeme, positions, weights)
    WHERE d.namespace = %(ns)s AND d.tsv @@ %(query)s::tsquery AND u.lexeme = ANY(%(terms)s::text[])
), scored AS (
    SELECT h.id, h.doc_len, h.tf, count(*) OVER (PARTITION BY h.lexeme)::float8 AS df FROM hits h
)
SELECT h.id,
       sum(ln(1 + (s.n - h.df + 0.5) / (h.df + 0.5)) * h.tf * (%(k1)s::float8 + 1)
           / (h.tf + %(k1)s::float8 * (1 - %(b)s::float8
                                         + %(b)s::float8 * h.doc_len / greatest(s.avgdl, 1e-9)))) AS score
FROM scored h CROSS JOIN stats s
GROUP BY h.id
ORDER BY score DESC, h.id
LIMIT %(limit)s
"""


def _quote(term: str) -> str:
    """A lexeme in ``tsvector``/``tsquery`` input syntax (quoted, escapes doubled)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _tsvector(tokens: list[str]) -> str:
    counts = Counter(t for t in tokens if len(t.encode()) <= MAX_LEXEME_BYTES)
    return " ".join(
        f"{_quote(term)}:{','.join(str(p) for p in range(1, min(tf, MAX_TF) + 1))}"
        for term, tf in counts.items()
    )


class PostgresKeywordIndex:
    """``IKeywordIndex`` in PostgreSQL (BM25, k1=1.2, b=0.75).

    ``PostgresKeywordIndex(pool)`` shares a pool (usually the store's);
    ``PostgresKeywordIndex(url, schema=...)`` opens and owns one.
    """

    name = "postgres"

    def __init__(
        self, url_or_pool: str | PostgresPool, *, schema: str | None = None, max_size: int = 10
    ) -> None:
        if isinstance(url_or_pool, PostgresPool):
            self._pool = url_or_pool
            self._owns_pool = False
        else:
            self._pool = PostgresPool(url_or_pool, schema=schema, max_size=max_size)
            self._owns_pool = True
        self._stats_cache: dict[str, tuple[float, float, float]] = {}

    def _stats(self, namespace: str) -> tuple[float, float]:
        """``(N, avgdl)`` of the namespace: counting every document costs a scan,
        so the figures are cached for ``STATS_TTL`` seconds and dropped on this
        index's own writes (another process's writes show after the TTL)."""
        now = time.monotonic()
        cached = self._stats_cache.get(namespace)
        if cached is not None and now - cached[0] < STATS_TTL:
            return cached[1], cached[2]
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*)::float8, coalesce(avg(doc_len), 0)::float8 FROM keyword_docs"
                " WHERE namespace = %s",
                [namespace],
            ).fetchone()
        n, avgdl = (float(row[0]), float(row[1])) if row else (0.0, 0.0)
        self._stats_cache[namespace] = (now, n, avgdl)
        return n, avgdl

    @property
    def pool(self) -> PostgresPool:
        return self._pool

    def index(self, namespace: str, docs: Sequence[tuple[str, str]]) -> None:
        latest = {doc_id: tokenize(text) for doc_id, text in docs}  # the last text of an id wins
        if not latest:
            return
        rows = [{"id": i, "tsv": _tsvector(tokens), "doc_len": len(tokens)} for i, tokens in latest.items()]
        with self._pool.connection() as conn:
            conn.execute(_INDEX, [namespace, dumps(rows)])
        self._stats_cache.pop(namespace, None)

    def remove(self, namespace: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._pool.connection() as conn:
            conn.execute(
                "DELETE FROM keyword_docs WHERE namespace = %s AND id = ANY(%s::text[])",
                [namespace, list(ids)],
            )
        self._stats_cache.pop(namespace, None)

    def search(self, namespace: str, query: str, limit: int) -> list[tuple[str, float]]:
        terms = [t for t in dict.fromkeys(tokenize(query)) if len(t.encode()) <= MAX_LEXEME_BYTES]
        if not terms or limit <= 0:
            return []
        quoted = [_quote(t) for t in terms]
        n, avgdl = self._stats(namespace)
        params = {
            "n": n,
            "avgdl": avgdl,
            "ns": namespace,
            "terms": terms,
            "query": " | ".join(quoted),
            "k1": K1,
            "b": B,
            "limit": limit,
        }
        with self._pool.connection() as conn:
            rows = conn.execute(_SEARCH, params).fetchall()
        return [(row[0], float(row[1])) for row in rows if row[1] > 0]

    def count(self, namespace: str) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM keyword_docs WHERE namespace = %s", [namespace]
            ).fetchone()
        return int(row[0]) if row else 0

    def health(self) -> None:
        self._pool.health()

    def close(self) -> None:
        if self._owns_pool:
            self._pool.close()
