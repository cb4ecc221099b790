"""PostgreSQL store throughput: bulk writes, batched reads and range queries.

    python benchmarks/postgres_bulk.py [--url URL] [--sizes 10000,100000] [--batch 1000]

For each size N, a fresh schema is migrated and N memories (3-dimensional
coordinates on a grid, payloads of about 200 bytes with text, tags and
importance) are written with ``PostgresStore.put_many`` in batches of
``--batch`` (each batch one transaction, with its history entries). Then:

* ``get_many`` of 100 random ids, repeated: p50 and p95 latency;
* ``find_range`` of a box that holds about 100 memories: p50 and p95.

The schema is dropped afterwards. The server must be reachable at ``--url``
(default ``SOMA_TEST_POSTGRES_URL`` or ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
import uuid
from collections.abc import Callable

import psycopg

from somafractalmemory.adapters.postgres import PostgresStore
from somafractalmemory.models import HistoryEntry, Memory, MemoryType, memory_id

NAMESPACE = "bench"
WORDS = ["agent", "memory", "recall", "vector", "graph", "coordinate", "payload", "keyword", "index", "cache"]


def machine() -> str:
    with psycopg.connect(ARGS.url) as conn:
        row = conn.execute("SELECT version()").fetchone()
    server = row[0].split(" on ")[0] if row else "?"
    return (
        f"{platform.platform()} | Python {platform.python_version()} | {os.cpu_count()} CPUs | "
        f"psycopg {psycopg.__version__} | {server}"
    )


def build(n: int, side: int) -> list[tuple[Memory, HistoryEntry]]:
    rng = random.Random(n)
    at = time.time()
    out = []
    for i in range(n):
        coord = (float(i % side), float((i // side) % side), float(i // (side * side)))
        mid = memory_id(NAMESPACE, coord)
        payload = {
            "text": " ".join(rng.choices(WORDS, k=12)),
            "tags": rng.sample(WORDS, 2),
            "importance": rng.randint(0, 10),
            "source": "benchmark",
        }
        mtype = MemoryType.EPISODIC if i % 2 else MemoryType.SEMANTIC
        memory = Memory(mid, NAMESPACE, coord, payload, mtype, at, at + i * 1e-3, 1)
        entry = HistoryEntry(
            NAMESPACE, mid, coord, 1, "created", payload, mtype, at, "bench", sorted(payload)
        )
        out.append((memory, entry))
    return out


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.95) - 1] * 1000


def run(n: int, batch: int) -> None:
    side = 50  # a 50 x 50 grid per layer; a 5 x 5 x 4 box holds 100 memories
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(ARGS.url, schema=schema, max_size=4)
    try:
        store.migrate()
        items = build(n, side)
        start = time.perf_counter()
        for i in range(0, n, batch):
            chunk = items[i : i + batch]
            store.put_many([m for m, _ in chunk], [h for _, h in chunk])
        elapsed = time.perf_counter() - start
        print(
            f"  put_many   N={n:>7,}  batch={batch:>6,}  {n / elapsed:>10,.0f} memories/s  ({elapsed:.2f} s)"
        )
        with store.pool.connection() as conn:
            conn.execute("ANALYZE memories")
        ids = [m.id for m, _ in items]
        rng = random.Random(1)
        p50, p95 = timed(lambda: store.get_many(NAMESPACE, rng.sample(ids, 100)), 200)
        print(f"  get_many   100 ids           p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")
        layers = max(1, n // (side * side))

        def box() -> object:
            x, y, z = rng.randrange(side - 5), rng.randrange(side - 5), rng.randrange(max(1, layers - 3))
            found = store.find_range(NAMESPACE, (x, y, z), (x + 4, y + 4, z + 3))
            assert len(found) == min(100, 25 * min(4, layers)), len(found)
            return found

        p50, p95 = timed(box, 200)
        print(f"  find_range box of ~100       p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")
    finally:
        store.close()
        with psycopg.connect(ARGS.url, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(schema))
            )


def main() -> None:
    print(machine())
    for n in (int(s) for s in ARGS.sizes.split(",")):
        for batch in (int(b) for b in ARGS.batch.split(",")):
            run(n, batch)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("SOMA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--batch", default="1000", help="comma-separated batch sizes")
    ARGS = parser.parse_args()
    main()
