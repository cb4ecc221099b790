"""What following other processes' writes costs (DEVELOPMENT, ``services.follower``).

    python benchmarks/multiprocess_sync.py [--n 100000] [--writes 1000] [--minilm]

Two memory systems on one data directory stand for two processes (each has
its own SQLite connection, fast core and BM25 index). Reported:

* **idle overhead**: recall p50 in a store of ``--n`` memories with the
  follower (default interval 200 ms, and 0 = a check before every read) and
  without it, when nothing changed; and one ``sync()`` that finds nothing;
* **catch-up per foreign write**: process A stores ``--writes`` memories one
  by one, then one read in B applies them all; per write, with the writer's
  saved vectors and re-embedding them instead;
* **write overhead** of saving each vector beside the memory;
* **start-up** at ``--n`` memories: snapshots + changes since (the fast
  path) vs a reconcile that re-reads every memory (the BM25 snapshot
  removed; every start did this before) vs no snapshot at all.

Hash embeddings unless ``--minilm`` (then the catch-up and write numbers use
the ONNX MiniLM model; start-up always uses hash embeddings).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from somafractalmemory.core import SomaFractalMemoryEnterprise
from somafractalmemory.factory import create_memory_system
from somafractalmemory.fastcore.store import FastCoreVectorStore

WORDS = [
    *("memory", "agent", "coffee", "meeting", "project", "deadline", "travel", "paris", "budget"),
    *("report", "email", "family", "dinner", "music", "guitar", "python", "database", "server"),
    *("deploy", "friend", "birthday", "weather", "garden", "book", "movie", "doctor", "health"),
]


def text(i: int) -> str:
    return f"note {i}: " + " ".join(WORDS[(i * k + k) % len(WORDS)] for k in range(1, 9))


def open_system(data: Path, interval_ms: int = 200, minilm: bool = False) -> SomaFractalMemoryEnterprise:
    config: dict[str, Any] = {"data_dir": str(data), "sync_interval_ms": interval_ms}
    config["embeddings"] = {"model": "minilm"} if minilm else {"force_hash": True}
    return create_memory_system("development", "bench", config)


def p50_us(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def fill(data: Path, n: int) -> None:
    system = open_system(data)
    for start in range(0, n, 5000):
        system.store_memories_bulk(
            [((float(i), 0.0), {"text": text(i)}) for i in range(start, min(n, start + 5000))]
        )
    system.close()


def idle_overhead(data: Path) -> None:
    """Recall p50 with and without the follower, alternating query by query
    (so machine noise hits both alike), once any ANN build has finished."""
    for label, interval in (("interval 200 ms", 200), ("interval 0 (every read)", 0)):
        system = open_system(data, interval)
        follower = system.backends.follower
        assert follower is not None
        system.recall("start the ANN build", top_k=10)
        vectors = system.backends.vectors
        assert isinstance(vectors, FastCoreVectorStore)
        while vectors.index_info("bench")["ann_building"]:
            time.sleep(0.2)
        times: dict[bool, list[float]] = {True: [], False: []}
        for i in range(1000):
            on = i % 2 == 0
            system.backends.follower = follower if on else None
            started = time.perf_counter()
            system.recall(text(i * 37 % 5000), top_k=10)
            times[on].append(time.perf_counter() - started)
        system.backends.follower = follower
        sync = p50_us(follower.sync, 5000)  # inside the interval: a clock comparison; else one check
        with_follower, without = (statistics.median(times[k]) * 1e6 for k in (True, False))
        print(f"recall p50, {label}: {with_follower:.0f} us with the follower, {without:.0f} us without")
        print(f"  sync() when nothing changed: {sync:.2f} us")
        system.close()


def catch_up(root: Path, writes: int, minilm: bool) -> None:
    for label, reuse in (("vectors saved by the writer", True), ("re-embedded by the follower", False)):
        data = root / f"catchup-{reuse}"
        a, b = open_system(data, 0, minilm), open_system(data, 0, minilm)
        follower = b.backends.follower
        assert follower is not None
        if not reuse:
            follower.indexer.embeddings = None
        b.recall("warm up")
        started = time.perf_counter()
        for i in range(writes):
            a.store_memory((float(i), 1.0), {"text": text(i)})
        write_us = (time.perf_counter() - started) / writes * 1e6
        started = time.perf_counter()
        follower.sync(force=True)
        per_write = (time.perf_counter() - started) / writes * 1e6
        assert b.backends.vectors.count("bench") == writes
        print(
            f"catch-up per foreign write ({label}): {per_write:.0f} us  [store in A: {write_us:.0f} us each]"
        )
        a.close()
        b.close()


def write_overhead(root: Path, minilm: bool) -> None:
    data = root / "writes"
    system = open_system(data, 200, minilm)
    counter = iter(range(10**9))
    saved = p50_us(lambda: system.store_memory((float(next(counter)), 2.0), {"text": text(7)}), 500)
    system.indexer.embeddings = None
    plain = p50_us(lambda: system.store_memory((float(next(counter)), 2.0), {"text": text(7)}), 500)
    extra = saved - plain
    print(f"store_memory p50: {saved:.0f} us saving the vector, {plain:.0f} us without (+{extra:.0f} us)")
    system.close()


def startup(data: Path, n: int) -> None:
    """Open + close, best of a few: from snapshots; with the BM25 snapshot
    removed (a reconcile re-reads every memory: what every start did before
    snapshots had checkpoints); with no snapshot at all."""

    def best(remove: tuple[str, ...], repeat: int) -> float:
        times = []
        for _ in range(repeat):
            for name in remove:
                shutil.rmtree(data / name, ignore_errors=True)
            started = time.perf_counter()
            system = open_system(data)
            times.append(time.perf_counter() - started)
            system.close()
        return min(times)

    open_system(data).close()
    fast = best((), 3)
    keywords = best(("keywords",), 2)
    full = best(("vectors", "keywords"), 2)
    print(
        f"start-up at {n:,} memories: {fast:.2f} s from snapshots, {keywords:.2f} s rebuilding BM25 "
        f"from the store, {full:.2f} s with no snapshot (vectors from the saved embeddings)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--minilm", action="store_true")
    args = parser.parse_args()
    os.environ.pop("SOMA_FORCE_HASH_EMBEDDINGS", None)
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpus")
    root = Path(tempfile.mkdtemp(prefix="sfm-sync-"))
    try:
        data = root / "big"
        started = time.perf_counter()
        fill(data, args.n)
        print(f"filled {args.n:,} memories in {time.perf_counter() - started:.1f} s")
        idle_overhead(data)
        startup(data, args.n)
        catch_up(root, args.writes, args.minilm)
        write_overhead(root, args.minilm)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
