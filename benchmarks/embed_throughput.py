"""Embedding throughput: texts per second for the hash and MiniLM embedders.

    python benchmarks/embed_throughput.py [--texts 1000] [--threads N]

Texts are sent in calls of ``batch`` texts each (batch 1 = one call per
text); the MiniLM embedder runs with ``batch_size`` equal to that batch.
The sentences are generated deterministically (seeded), 6 to 40 words long.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from collections.abc import Sequence

import numpy as np

from somafractalmemory.embeddings import HashEmbedder, OnnxMiniLMEmbedder
from somafractalmemory.interfaces.storage import IEmbedder

PEOPLE = ["The user", "Alice", "Our manager", "The support team", "Bob from finance", "The customer"]
VERBS = ["asked about", "wants to change", "complained about", "approved", "forgot", "needs a summary of"]
THINGS = [
    "the database migration",
    "the quarterly revenue report",
    "dark mode in the editor",
    "the flight to Lisbon",
    "invoice 4471",
    "the onboarding checklist",
    "the broken login page",
    "their vegetarian meal preference",
]
WHEN = ["on Tuesday", "last week", "before the release", "after lunch", "every morning", "by Friday"]
TAILS = [
    "because the old process kept failing under load",
    "and expects an answer before the next planning meeting",
    "so remember to follow up with a short written note",
    "although nobody has agreed on the budget yet",
    "which came up again during the incident review",
]


def sentences(n: int, seed: int = 7) -> list[str]:
    """``n`` varied, realistic memory-like sentences (deterministic)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(PEOPLE), rng.choice(VERBS), rng.choice(THINGS), rng.choice(WHEN)]
        words += rng.sample(TAILS, k=rng.choice([0, 0, 1, 2]))
        out.append(" ".join(words) + rng.choice([".", "!", "?"]))
    return out


def rate(embedder: IEmbedder, texts: Sequence[str], batch: int, repeat: int = 3) -> tuple[float, float]:
    """Best-of-``repeat`` texts per wall second and per CPU second of this
    process, sending ``batch`` texts per call. On a busy machine the CPU
    figure is the steadier one (with one thread it is the single-core rate)."""
    embedder.embed(list(texts[:batch]))  # warm up
    wall = cpu = float("inf")
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(texts), batch):
            embedder.embed(texts[i : i + batch])
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return len(texts) / wall, len(texts) / max(cpu, 1e-9)


def show(label: str, batch: int, rates: tuple[float, float]) -> None:
    print(f"{label:<28} batch {batch:>5}: {rates[0]:>9,.0f} texts/s wall {rates[1]:>9,.0f} texts/cpu-s")


def machine() -> str:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{platform.platform()} | {cpu} | {os.cpu_count()} cpus | Python {platform.python_version()} | "
        f"numpy {np.__version__} | onnxruntime {onnxruntime.__version__} | "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    args = parser.parse_args()
    texts = sentences(args.texts)
    words = np.mean([len(t.split()) for t in texts])
    print(machine())
    print(f"{len(texts)} sentences, {words:.1f} words on average\n")

    hashed = HashEmbedder()
    for batch in (1, 32, 64, 128, len(texts)):
        show("hash-384", batch, rate(hashed, texts, batch))
    show("hash-384-c3 (char trigrams)", len(texts), rate(HashEmbedder(char_trigrams=True), texts, len(texts)))

    start = time.perf_counter()
    OnnxMiniLMEmbedder(intra_op_threads=args.threads)
    print(f"\nMiniLM load (first, with imports): {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    OnnxMiniLMEmbedder(intra_op_threads=args.threads)
    print(f"MiniLM load (again):               {time.perf_counter() - start:.2f} s")
    label = f"MiniLM int8, {args.threads or 'default'} threads"
    for batch in (1, 32, 64, 128):
        minilm = OnnxMiniLMEmbedder(batch_size=batch, intra_op_threads=args.threads)
        show(label, batch, rate(minilm, texts, batch, repeat=2))
    print(f"\n{len(texts)} texts in one call (sorted by length, then cut into batch_size batches):")
    for batch in (32, 64, 128):
        minilm = OnnxMiniLMEmbedder(batch_size=batch, intra_op_threads=args.threads)
        show(label + ", one call", batch, rate(minilm, texts, len(texts), repeat=2))


if __name__ == "__main__":
    main()
