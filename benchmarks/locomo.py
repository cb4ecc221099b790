"""Retrieval evaluation on LoCoMo: hybrid recall against two plain baselines.

Every dialogue turn becomes a memory of its conversation's namespace; every
question with evidence (category 5, adversarial, is skipped) is asked, and
the ranks of the evidence turns are scored: hit@k and recall@k (k = 1, 5,
10, 20), MRR and nDCG@10, overall and per category, for

* ``hybrid``  - the default ``recall`` of Soma Fractal Memory,
* ``dense``   - plain cosine similarity with the same embedder,
* ``bm25``    - plain BM25 (k1 = 1.2, b = 0.75) over the same tokens.

The data set is not part of this repository; pass its path with --data
(default: ``../shared/data/locomo/locomo-dev.json`` next to the checkout).

    python benchmarks/locomo.py [--data PATH] [--embedder minilm|hash]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from somafractalmemory.factory import create_memory_system
from somafractalmemory.text import tokenize

KS = (1, 5, 10, 20)
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo" / "locomo-dev.json"


def load(path: Path) -> list[dict[str, Any]]:
    import json

    with open(path, encoding="utf-8") as fh:
        data: list[dict[str, Any]] = json.load(fh)
    return data


def turns_of(sample: dict[str, Any]) -> list[dict[str, Any]]:
    conv = sample["conversation"]
    out = []
    for key in sorted(
        (k for k in conv if k.startswith("session_") and not k.endswith("date_time")),
        key=lambda k: int(k.split("_")[1]),
    ):
        session = int(key.split("_")[1])
        for index, turn in enumerate(conv[key]):
            text = turn.get("text", "")
            caption = turn.get("blip_caption")
            if caption:
                text = f"{text} [shared a photo: {caption}]"
            out.append(
                {
                    "coord": (float(session), float(index)),
                    "dia_id": turn["dia_id"],
                    "speaker": turn["speaker"],
                    "text": text,
                    "date": conv.get(f"{key}_date_time", ""),
                }
            )
    return out


def metrics(ranked: Sequence[str], evidence: set[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in KS:
        top = ranked[:k]
        found = sum(1 for d in evidence if d in top)
        out[f"hit@{k}"] = 1.0 if found else 0.0
        out[f"recall@{k}"] = found / len(evidence)
    rank = next((i + 1 for i, d in enumerate(ranked) if d in evidence), None)
    out["mrr"] = 1.0 / rank if rank else 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in evidence)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(evidence), 10)))
    out["ndcg@10"] = dcg / ideal if ideal else 0.0
    return out


class BM25:
    """Plain Okapi BM25 over ``text.tokenize`` tokens (the keyword baseline)."""

    def __init__(self, docs: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.tokens = [Counter(tokenize(d)) for d in docs]
        self.lengths = np.array([sum(c.values()) for c in self.tokens], dtype=np.float64)
        self.avgdl = float(self.lengths.mean()) if len(docs) else 0.0
        df: Counter[str] = Counter()
        for c in self.tokens:
            df.update(c.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.k1, self.b = k1, b

    def scores(self, query: str) -> np.ndarray:
        out = np.zeros(len(self.tokens))
        for term in set(tokenize(query)):
            idf = self.idf.get(term)
            if idf is None:
                continue
            for i, c in enumerate(self.tokens):
                tf = c.get(term)
                if tf:
                    norm = self.k1 * (1 - self.b + self.b * self.lengths[i] / self.avgdl)
                    out[i] += idf * tf * (self.k1 + 1) / (tf + norm)
        return out


def make_rankers(
    memory: Any, by_coord: dict[Any, str], matrix: np.ndarray, bm25: BM25, dia: list[str]
) -> dict[str, Callable[[str], list[str]]]:
    """The three systems, each a function from a question to the top 20 dia_ids."""

    def hybrid(q: str) -> list[str]:
        return [by_coord[tuple(h["coordinate"])] for h in memory.recall(q, top_k=20)]

    def dense(q: str) -> list[str]:
        return [dia[i] for i in np.argsort(-(matrix @ memory.embed_text(q)))[:20]]

    def keyword(q: str) -> list[str]:
        return [dia[i] for i in np.argsort(-bm25.scores(q), kind="stable")[:20]]

    return {"hybrid": hybrid, "dense": dense, "bm25": keyword}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{platform.platform()} | {cpu} | {os.cpu_count()} cores | Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SOMA_LOCOMO_PATH", DEFAULT_DATA)))
    parser.add_argument("--embedder", default="minilm", help="minilm (default) or hash")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N conversations")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"data set not found: {args.data} (pass --data)", file=sys.stderr)
        return 2
    samples = load(args.data)[: args.limit or None]
    print(f"machine: {machine()}")
    print(f"data: {args.data.name}: {len(samples)} conversations; embedder: {args.embedder}")

    systems = ("hybrid", "dense", "bm25")
    per: dict[str, dict[str, list[dict[str, float]]]] = {s: defaultdict(list) for s in systems}
    timings: dict[str, float] = defaultdict(float)
    n_questions = 0
    for sample in samples:
        ns = str(sample.get("sample_id", "conv")).replace("/", "_")
        memory = create_memory_system("test", ns, config={"embeddings": {"model": args.embedder}})
        turns = turns_of(sample)
        by_coord = {t["coord"]: t["dia_id"] for t in turns}
        started = time.perf_counter()
        memory.store_memories_bulk(
            [
                (
                    t["coord"],
                    {
                        "text": t["text"],
                        "speaker": t["speaker"],
                        "meta": {"dia_id": t["dia_id"], "date": t["date"]},
                    },
                    "episodic",
                )
                for t in turns
            ]
        )
        timings["store"] += time.perf_counter() - started
        texts = [f"{t['text']}\n{t['speaker']}" for t in turns]
        matrix = memory.backends.embedder.embed(texts)
        bm25 = BM25(texts)
        dia = [t["dia_id"] for t in turns]
        questions = [q for q in sample["qa"] if q.get("category") != 5 and q.get("evidence")]
        rankers = make_rankers(memory, by_coord, matrix, bm25, dia)
        for qa in questions:
            evidence = {e.strip() for e in qa["evidence"]}
            n_questions += 1
            for name, rank in rankers.items():
                started = time.perf_counter()
                ranked = rank(str(qa["question"]))
                timings[name] += time.perf_counter() - started
                m = metrics(ranked, evidence)
                per[name]["all"].append(m)
                per[name][f"cat{qa['category']}"].append(m)
        memory.close()

    columns = [*(f"hit@{k}" for k in KS), *(f"recall@{k}" for k in KS), "mrr", "ndcg@10"]
    print(f"questions: {n_questions} (category 5 skipped)")
    for group in ["all", *sorted(g for g in per["hybrid"] if g != "all")]:
        n = len(per["hybrid"][group])
        print(f"\n[{group}] n={n}")
        print(f"{'system':8s} " + " ".join(f"{c:>9s}" for c in columns))
        for name in systems:
            rows = per[name][group]
            means = [sum(r[c] for r in rows) / len(rows) for c in columns]
            print(f"{name:8s} " + " ".join(f"{v:9.3f}" for v in means))
    print(
        "\nmean query latency (ms): "
        + ", ".join(f"{name} {1000 * timings[name] / max(n_questions, 1):.2f}" for name in systems)
    )
    overall = {
        name: {c: sum(r[c] for r in per[name]["all"]) / n_questions for c in ("hit@10", "mrr")}
        for name in systems
    }
    beats = all(overall["hybrid"][c] > overall[b][c] for b in ("dense", "bm25") for c in ("hit@10", "mrr"))
    print(f"hybrid beats both baselines on hit@10 and MRR: {'yes' if beats else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
