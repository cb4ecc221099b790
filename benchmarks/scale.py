"""Throughput and latency at scale, per wiring.

For each wiring and size it prints: bulk-store throughput (memories/s,
batches of 1,000 through ``store_memories_bulk``), recall p50/p99 (ms,
``recall`` with top_k=10 on random queries), retrieve p50 (ms) and range
p50 (ms, a box holding about 100 memories). Embeddings are the hash
embedder (as the targets specify); MiniLM throughput is printed separately.

    python benchmarks/scale.py                       # 10k and 100k, test + development
    python benchmarks/scale.py --sizes 10000 --wirings test
    python benchmarks/scale.py --wirings enterprise-fast,enterprise-qdrant   # needs PostgreSQL + Redis
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

os.environ.setdefault("SOMA_FORCE_HASH_EMBEDDINGS", "1")

from somafractalmemory.core import SomaFractalMemoryEnterprise
from somafractalmemory.factory import create_memory_system

WORDS = [
    "memory",
    "agent",
    "coffee",
    "meeting",
    "project",
    "deadline",
    "travel",
    "paris",
    "budget",
    "report",
    "email",
    "family",
    "dinner",
    "music",
    "guitar",
    "python",
    "database",
    "server",
    "deploy",
    "friend",
    "birthday",
    "weather",
    "garden",
    "book",
    "movie",
    "doctor",
    "health",
    "running",
    "marathon",
    "school",
    "exam",
    "lecture",
    "kafka",
    "postgres",
    "redis",
    "vector",
    "index",
    "recall",
    "graph",
]
GRID = 50  # coordinates are (i % GRID, (i // GRID) % GRID, i // GRID**2)


def machine() -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{platform.platform()} | {cpu} | {os.cpu_count()} cores | Python {platform.python_version()}"


#: Synthetic text with the structure of real text: 5,000 terms with Zipf
#: frequencies, and 500 topics of 20 terms each; a memory is 8 words of one
#: topic plus 4 common words, a query 4 words of one topic plus 1 common word.
VOCABULARY = WORDS + [f"term{i}" for i in range(5000 - len(WORDS))]
ZIPF = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(VOCABULARY))))
TOPICS = [random.Random(t).sample(VOCABULARY[100:], 20) for t in range(500)]


def sentence(rng: random.Random, n: int = 12) -> str:
    topic = TOPICS[rng.randrange(len(TOPICS))]
    own = max(1, (2 * n) // 3)
    words = rng.choices(topic, k=own) + rng.choices(VOCABULARY, cum_weights=ZIPF, k=n - own)
    rng.shuffle(words)
    return " ".join(words)


def coord(i: int) -> tuple[int, int, int]:
    return (i % GRID, (i // GRID) % GRID, i // (GRID * GRID))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def build(wiring: str, data_dir: str) -> SomaFractalMemoryEnterprise:
    ns = f"bench_{uuid.uuid4().hex[:8]}"
    pg = os.environ.get("SOMA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis = os.environ.get("SOMA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    configs: dict[str, tuple[str, dict[str, Any]]] = {
        "test": ("test", {}),
        "development": ("development", {"data_dir": data_dir}),
        "enterprise-fast": (
            "development",
            {
                "postgres": {"url": pg, "schema": ns},
                "redis": {"url": redis, "prefix": f"{ns}:"},
                "vector": {"backend": "fast"},
            },
        ),
        "enterprise-qdrant": (
            "development",
            {
                "postgres": {"url": pg, "schema": ns},
                "redis": {"url": redis, "prefix": f"{ns}:"},
                "qdrant": {"path": os.path.join(data_dir, "qdrant")},
            },
        ),
    }
    mode, config = configs[wiring]
    if "postgres" in config:
        import psycopg

        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{ns}"')
    return create_memory_system(mode, ns, config=config)


def run(wiring: str, size: int, queries: int) -> None:
    rng = random.Random(size)
    with tempfile.TemporaryDirectory() as tmp:
        memory = build(wiring, tmp)
        items = [
            (coord(i), {"text": sentence(rng), "importance": rng.randint(0, 5)}, "episodic")
            for i in range(size)
        ]
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, size, 1000):
            memory.store_memories_bulk(items[start : start + 1000])
        elapsed = time.perf_counter() - started
        cpu = max(time.process_time() - cpu_started, 1e-9)
        qs = [sentence(rng, 5) for _ in range(queries)]
        memory.recall(qs[0], top_k=10)  # warm-up: starts the ANN index build above the threshold
        info = getattr(memory.backends.vectors, "index_info", None)
        build_started = time.perf_counter()
        while info is not None and info(memory.namespace)["ann_building"]:
            time.sleep(0.5)
        if info is not None:
            state = info(memory.namespace)
            print(
                f"  vectors: {state['points']:,d} points, ANN index in use: {state['ann']} "
                f"(waited {time.perf_counter() - build_started:.1f} s for the build)",
                flush=True,
            )
        it = iter(qs * 2)
        recall_ms = timed(lambda: memory.recall(next(it), top_k=10), queries)
        probes = [coord(rng.randrange(size)) for _ in range(queries)]
        pit = iter(probes * 2)
        retrieve_ms = timed(lambda: memory.retrieve(next(pit)), queries)
        lo = (10, 10, 0)
        hi = (19, 19, max(0, size // (GRID * GRID) - 1))
        boxes = len(memory.find_by_coordinate_range(lo, hi))
        box = (lo, (19, 19, 0)) if boxes > 400 else (lo, hi)
        hits = len(memory.find_by_coordinate_range(*box))
        range_ms = timed(lambda: memory.find_by_coordinate_range(*box), 50)
        print(
            f"{wiring:18s} n={size:>7,d}  store {size / elapsed:>9,.0f}/s ({size / cpu:,.0f}/CPU-s)  "
            f"recall p50 {statistics.median(recall_ms):6.2f} ms p99 {percentile(recall_ms, 0.99):6.2f} ms  "
            f"retrieve p50 {statistics.median(retrieve_ms):6.3f} ms  "
            f"range({hits}) p50 {statistics.median(range_ms):6.2f} ms",
            flush=True,
        )
        memory.close()
        cleanup(wiring, memory.namespace)


def cleanup(wiring: str, ns: str) -> None:
    """Drop what an enterprise wiring left in PostgreSQL and Redis (its own schema and key prefix)."""
    if not wiring.startswith("enterprise"):
        return
    import psycopg
    import redis

    pg = os.environ.get("SOMA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE'.encode())
    client = redis.Redis.from_url(os.environ.get("SOMA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
    for start in range(0, len(keys), 1000):
        client.unlink(*keys[start : start + 1000])
    client.close()


def minilm_throughput(n: int = 512) -> None:
    from somafractalmemory.embeddings.registry import create_embedder

    os.environ.pop("SOMA_FORCE_HASH_EMBEDDINGS", None)
    rng = random.Random(7)
    texts = [sentence(rng, 14) for _ in range(n)]
    embedder = create_embedder("minilm")
    embedder.embed(texts[:8])
    started = time.perf_counter()
    embedder.embed(texts)
    print(
        f"MiniLM int8 ONNX embedding: {n / (time.perf_counter() - started):,.0f} texts/s (batched, 14 words)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--wirings", default="test,development")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--no-minilm", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()} | load average {os.getloadavg()[0]:.2f}")
    print("store /CPU-s divides by this process's CPU time: the rate on an otherwise idle core")
    print("baseline (same run): the 'test' wiring (in-process) is the reference for the others")
    for size in (int(s) for s in args.sizes.split(",")):
        for wiring in args.wirings.split(","):
            run(wiring, size, args.queries)
    if not args.no_minilm:
        minilm_throughput()


if __name__ == "__main__":
    main()
