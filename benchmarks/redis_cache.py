"""Retrieve latency: the canonical store alone vs. through the Redis cache.

    python benchmarks/redis_cache.py [--memories 2000] [--reads 5000] [--batch 1]
        [--canonical memory,sqlite,postgres] [--redis-url URL] [--postgres-url URL]

For each canonical store it reports p50/p99 of ``get_many`` with ``--batch``
random ids: straight from the store, through ``CachedKeyValueStore`` on a
miss (the first read of each id: token, canonical read, fill), and on a hit.
Keys live under a random prefix that is deleted at the end; PostgreSQL runs
in a throw-away schema. Stores whose service is unreachable are skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from somafractalmemory.adapters.hybrid import CachedKeyValueStore
from somafractalmemory.adapters.redis import RedisCache, build_client
from somafractalmemory.errors import SFMError
from somafractalmemory.interfaces.storage import IKeyValueStore
from somafractalmemory.models import Memory, MemoryType, memory_id

NS = "bench"


def machine() -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    return f"{platform.platform()} | {cpu} | {os.cpu_count()} CPUs | Python {platform.python_version()}"


def memories(n: int) -> list[Memory]:
    rng = random.Random(7)
    now = time.time()
    out = []
    for i in range(n):
        coord = (float(i), rng.random(), rng.random())
        payload = {
            "text": f"memory {i} " + "lorem ipsum " * rng.randint(5, 40),
            "importance": rng.random() * 5,
        }
        out.append(Memory(memory_id(NS, coord), NS, coord, payload, MemoryType.EPISODIC, now, now, 1))
    return out


def timed(fn: Callable[[list[str]], object], batches: Sequence[list[str]]) -> list[float]:
    out = []
    for ids in batches:
        started = time.perf_counter_ns()
        fn(ids)
        out.append((time.perf_counter_ns() - started) / 1000)
    return out


def row(label: str, samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"  {label:<22} p50 {cuts[49]:9.1f} us   p99 {cuts[98]:9.1f} us   n={len(samples)}"


@contextlib.contextmanager
def canonical(kind: str, postgres_url: str) -> Iterator[IKeyValueStore]:
    if kind == "memory":
        from somafractalmemory.adapters.memory.kv import InMemoryKeyValueStore

        yield InMemoryKeyValueStore()
    elif kind == "sqlite":
        from somafractalmemory.adapters.sqlite import SQLiteStore

        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "bench.db")
            yield store
            store.close()
    elif kind == "postgres":
        from somafractalmemory.adapters.postgres import PostgresPool, PostgresStore

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = PostgresPool(postgres_url, max_size=1)
        with admin.connection() as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            pg = PostgresStore(postgres_url, schema=schema, max_size=2)
            pg.migrate()
            yield pg
            pg.close()
        finally:
            with admin.connection() as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            admin.close()
    else:
        raise SystemExit(f"unknown canonical store {kind!r}")


def run(kind: str, args: argparse.Namespace, prefix: str) -> None:
    data = memories(args.memories)
    ids = [m.id for m in data]
    rng = random.Random(11)
    batches = [rng.sample(ids, args.batch) for _ in range(args.reads)]
    with canonical(kind, args.postgres_url) as store:
        for start in range(0, len(data), 500):
            store.put_many(data[start : start + 500], [])
        cache = RedisCache(args.redis_url, prefix=f"{prefix}{kind}:")
        cached = CachedKeyValueStore(store, cache, ttl_seconds=600)
        print(f"{kind} ({args.memories} memories, batch {args.batch}):")
        canon = timed(lambda b: store.get_many(NS, b), batches)
        cold = [[i] for i in ids[: min(len(ids), args.reads)]]
        miss = timed(lambda b: cached.get_many(NS, b), cold)
        for start in range(0, len(ids), 500):
            cached.get_many(NS, ids[start : start + 500])  # warm every id
        before = cached.stats["hits"]
        hit = timed(lambda b: cached.get_many(NS, b), batches)
        assert cached.stats["hits"] - before == args.reads * args.batch, "some reads missed the cache"
        print(row("canonical only", canon))
        print(row("cached, miss (+fill)", miss))
        print(row("cached, hit", hit))
        cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--memories", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--canonical", default="memory,sqlite,postgres")
    parser.add_argument(
        "--redis-url", default=os.environ.get("SOMA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("SOMA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    client = build_client(args.redis_url)
    print(machine())
    print(f"Redis {client.info('server')['redis_version']} at {args.redis_url}")
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    try:
        for kind in args.canonical.split(","):
            try:
                run(kind.strip(), args, prefix)
            except SFMError as exc:
                print(f"{kind}: skipped ({exc})")
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
        client.close()


if __name__ == "__main__":
    main()
