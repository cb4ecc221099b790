"""Search latency of the fast core against the plain paths, and ANN quality.

    python benchmarks/fast_core_smoke.py [--n 2000] [--q 50] [--k 10]
    python benchmarks/fast_core_smoke.py --n 100000 --ann-check 1000

Three ways to get the top ``k`` by base score ``max(0, cos) * importance_norm``
from ``--n`` stored vectors, each timed over ``--q`` queries (p50/p95/p99):

* the vector-store path: ``InMemoryVectorStore`` (the reference adapter);
* Qdrant local mode (``QdrantClient(":memory:")``, cosine collection): the
  best ``4k`` by cosine, then re-ranked by importance in Python;
* the fast core: ``FastCoreVectorStore``.

Vectors come from ``somafractalmemory.embeddings`` (the hash embedder when
``SOMA_FORCE_HASH_EMBEDDINGS=1``) over generated sentences; if that module
cannot be imported, from seeded numpy. The output says which.

``--ann-check N`` builds the fast core's HNSW index over ``--n`` vectors and
reports the overlap of its top-10 with the exact top-10 on ``N`` queries,
plus both latencies. ``--ann-data`` picks the vectors: ``embedding-like``
(points on a random 32-dimensional subspace plus a little isotropic noise,
a stand-in for sentence embeddings; the default), ``isotropic`` (uniform on
the sphere: the worst case for any graph index) or ``hash`` (the embedder).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from somafractalmemory.adapters.memory.vectors import InMemoryVectorStore
from somafractalmemory.fastcore import FastCoreVectorStore, ann_available
from somafractalmemory.interfaces.storage import VectorPoint
from somafractalmemory.models import MemoryType, importance_norm

NS = "bench"
_VOCABULARY = (
    "user asked about database migration quarterly revenue report dark mode editor flight lisbon "
    "invoice onboarding checklist login page vegetarian meal budget release incident review deploy "
    "kafka postgres redis cache latency customer manager meeting summary follow up tuesday friday "
    "password reset billing refund contract renewal roadmap design sprint backlog outage alert"
)
WORDS = _VOCABULARY.split()


def machine() -> str:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return (
        f"machine: {platform.platform()}\ncpu: {cpu}, {os.cpu_count()} logical cores\n"
        f"python {platform.python_version()}, numpy {np.__version__}, usearch {_version('usearch')}, "
        f"qdrant-client {_version('qdrant_client')}\n"
        f"load average {os.getloadavg()[0]:.2f}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module.replace("_", "-"))
    except Exception:
        return "not installed"


def unit(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return (a / np.where(norms > 0, norms, 1)).astype(np.float32)


def numpy_vectors(n: int, dim: int, seed: int, kind: str = "embedding-like") -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "isotropic":
        return unit(rng.standard_normal((n, dim), dtype=np.float32))
    basis = np.random.default_rng(12345).standard_normal((dim, 32)).astype(np.float32)
    return unit(
        rng.standard_normal((n, 32), dtype=np.float32) @ basis.T + 0.3 * rng.standard_normal((n, dim))
    )


def embedded_vectors(n: int, dim: int, seed: int) -> tuple[np.ndarray, str] | None:
    try:
        from somafractalmemory.embeddings import create_embedder

        embedder = create_embedder(dim=dim)
    except Exception:
        return None
    rng = random.Random(seed)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(6, 16))) for _ in range(n)]
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    return vectors, f"embedder {embedder.model_id} over generated sentences"


def vectors_for(n: int, dim: int, seed: int, kind: str) -> tuple[np.ndarray, str]:
    if kind in ("auto", "hash"):
        got = embedded_vectors(n, dim, seed)
        if got is not None:
            return got
        if kind == "hash":
            raise SystemExit("somafractalmemory.embeddings cannot be imported")
        kind = "embedding-like"
    return numpy_vectors(n, dim, seed, kind), f"seeded numpy, {kind} unit vectors"


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(np.asarray(samples) * 1000, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def timed(search: Callable[[np.ndarray], Any], queries: np.ndarray) -> list[float]:
    for q in queries[:5]:
        search(q)  # warm up
    out = []
    for q in queries:
        start = time.perf_counter()
        search(q)
        out.append(time.perf_counter() - start)
    return out


def points(vectors: np.ndarray, seed: int) -> list[VectorPoint]:
    rng = np.random.default_rng(seed)
    imps = rng.integers(0, 11, len(vectors))
    kinds = (MemoryType.EPISODIC, MemoryType.SEMANTIC)
    return [
        VectorPoint(f"m{i:07d}", v, importance_norm(float(imps[i])), kinds[i % 2], 1, {"n": i})
        for i, v in enumerate(vectors)
    ]


def qdrant_search(pts: list[VectorPoint], dim: int, k: int) -> Callable[[np.ndarray], Any] | None:
    try:
        from qdrant_client import QdrantClient, models
    except ImportError:
        return None
    client = QdrantClient(":memory:")
    client.create_collection(
        NS, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
    )
    for start in range(0, len(pts), 1000):
        client.upsert(
            NS,
            [
                models.PointStruct(id=i, vector=p.vector.tolist(), payload={"imp": p.importance_norm})
                for i, p in enumerate(pts[start : start + 1000], start)
            ],
        )

    def search(q: np.ndarray) -> list[tuple[int, float]]:
        found = client.query_points(NS, query=q.tolist(), limit=4 * k, with_payload=True).points
        scored = [(int(h.id), max(0.0, h.score) * float((h.payload or {})["imp"])) for h in found]
        return sorted(scored, key=lambda t: (-t[1], t[0]))[:k]

    return search


def latency(args: argparse.Namespace) -> None:
    data, source = vectors_for(args.n + args.q, args.dim, args.seed, args.data)
    stored, queries = data[: args.n], data[args.n :]
    print(f"vectors: {source}; n={args.n} dim={args.dim} queries={args.q} k={args.k}\n")
    pts = points(stored, args.seed)
    reference, fast = InMemoryVectorStore(args.dim), FastCoreVectorStore(args.dim, ann_background=False)
    reference.upsert(NS, pts)
    fast.upsert(NS, pts)
    rows = [("vector-store path (InMemoryVectorStore)", lambda q: reference.search(NS, q, args.k))]
    qdrant = qdrant_search(pts, args.dim, args.k)
    if qdrant is not None:
        rows.append(("Qdrant local mode (cosine top-4k, importance re-rank in Python)", qdrant))
    rows.append(("fast core (FastCoreVectorStore)", lambda q: fast.search(NS, q, args.k)))
    results = {label: percentiles(timed(fn, queries)) for label, fn in rows}
    width = max(len(label) for label in results)
    print(f"{'search path':<{width}}  {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for label, (p50, p95, p99) in results.items():
        print(f"{label:<{width}}  {p50:8.3f} {p95:8.3f} {p99:8.3f}")
    fast_p50 = results[rows[-1][0]][0]
    print()
    for label, (p50, _, _) in list(results.items())[:-1]:
        print(f"fast core speedup over {label.split(' (')[0]}: {p50 / fast_p50:.1f}x at p50")
    same = ties = 0
    for q in queries:
        got, want = fast.search(NS, q, args.k), reference.search(NS, q, args.k)
        same += [h.id for h in got] == [h.id for h in want]
        ties += all(a.id == b.id or abs(a.score - b.score) < 1e-6 for a, b in zip(got, want, strict=True))
    print(
        f"fast core top-{args.k} identical to the reference on {same}/{len(queries)} queries, "
        f"and up to the order of tied scores (float32 vs float64 rounding) on {ties}/{len(queries)}"
    )


def ann_check(args: argparse.Namespace) -> None:
    if not ann_available():
        raise SystemExit("usearch is not installed: pip install 'somafractalmemory[ann]'")
    kind = "hash" if args.ann_data == "hash" else args.ann_data
    data, source = vectors_for(args.n + args.ann_check, args.dim, args.seed, kind)
    stored, queries = data[: args.n], data[args.n :]
    pts = points(stored, args.seed)
    imp = np.asarray([p.importance_norm for p in pts], dtype=np.float32)
    print(f"ANN check: {source}; n={args.n} dim={args.dim} queries={args.ann_check}")
    store = FastCoreVectorStore(args.dim, ann_background=False, ann_threshold=min(args.n, 20_000))
    store.upsert(NS, pts)
    start = time.perf_counter()
    store.search(NS, queries[0], 10)  # builds and calibrates the index inline
    print(f"index build + calibration: {time.perf_counter() - start:.1f} s")
    info = store.index_info(NS)
    if not info["ann"]:
        print("the index missed the target overlap at every expansion: the fast core uses exact search here")
    else:
        print(f"calibrated expansion_search (ef): {info['expansion_search']}")
    before = dict(store.search_counts)
    overlap, ann_times = 0, []
    for i in range(0, len(queries), 100):
        block = queries[i : i + 100]
        exact = np.clip(block @ stored.T, 0, 1) * imp
        for q, row in zip(block, exact, strict=True):
            truth = set(np.argpartition(-row, 9)[:10].tolist())
            t0 = time.perf_counter()
            hits = store.search(NS, q, 10)
            ann_times.append(time.perf_counter() - t0)
            overlap += len(truth & {int(h.id[1:]) for h in hits})
    served = store.search_counts["ann"] - before["ann"]
    print(f"searches served by ANN: {served}/{len(queries)}")
    print(f"ANN top-10 overlap with exact: {overlap / (10 * len(queries)):.4f}")
    exact_store = FastCoreVectorStore(args.dim, ann=False)
    exact_store.upsert(NS, pts)
    exact_times = timed(lambda q: exact_store.search(NS, q, 10), queries[: min(200, len(queries))])
    p = percentiles(ann_times)
    e = percentiles(exact_times)
    path = "through the index" if served else "index not used, so exact"
    print(
        f"fast core search at n={args.n} ({path}): p50 {p[0]:.3f} ms (p95 {p[1]:.3f}, p99 {p[2]:.3f}); "
        f"exact only: p50 {e[0]:.3f} ms (p95 {e[1]:.3f}, p99 {e[2]:.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="stored vectors")
    parser.add_argument("--q", type=int, default=50, help="timed queries")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--data",
        choices=["auto", "embedding-like", "isotropic"],
        default="auto",
        help="latency vectors: auto = the embedder if importable, else numpy",
    )
    parser.add_argument("--ann-check", type=int, default=0, metavar="N", help="ANN overlap on N queries")
    parser.add_argument(
        "--ann-data", choices=["embedding-like", "isotropic", "hash"], default="embedding-like"
    )
    args = parser.parse_args()
    print(machine(), end="\n\n")
    if args.ann_check:
        ann_check(args)
    else:
        latency(args)


if __name__ == "__main__":
    main()
