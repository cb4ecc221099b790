"""The in-process BM25 index against a plain reference implementation of the
formula in its docstring, through random batches of adds, replacements,
removals, queries and snapshot round trips."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import pytest

from somafractalmemory.adapters.memory.keyword import K1, B, InMemoryKeywordIndex
from somafractalmemory.text import tokenize

WORDS = [f"w{i}" for i in range(40)] + ["alpha", "beta", "gamma", "delta"]


def reference(docs: dict[str, list[str]], query: str) -> dict[str, float]:
    n = len(docs)
    if n == 0:
        return {}
    avgdl = max(sum(len(t) for t in docs.values()) / n, 1e-9)
    df = Counter(term for tokens in docs.values() for term in set(tokens))
    scores: dict[str, float] = {}
    for doc_id, tokens in docs.items():
        tf = Counter(tokens)
        score = 0.0
        for term in set(tokenize(query)):
            if tf[term]:
                idf = math.log(1.0 + (n - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf[term] * (K1 + 1) / (tf[term] + K1 * (1 - B + B * len(tokens) / avgdl))
        if score > 0:
            scores[doc_id] = score
    return scores


def text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(0, 9)))


@pytest.mark.parametrize("seed", range(6))
def test_random_operations_match_the_reference(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    index = InMemoryKeywordIndex(path=tmp_path)
    docs: dict[str, list[str]] = {}
    for step in range(60):
        action = rng.random()
        if action < 0.5:
            batch = [(f"d{rng.randrange(150)}", text(rng)) for _ in range(rng.randint(1, 40))]
            index.index("ns", batch)
            for doc_id, body in batch:
                docs[doc_id] = tokenize(body)
        elif action < 0.7 and docs:
            gone = rng.sample(sorted(docs), k=min(len(docs), rng.randint(1, 30)))
            index.remove("ns", gone)
            for doc_id in gone:
                docs.pop(doc_id)
        elif action < 0.8:
            index.close()  # writes the snapshot; a new index loads it
            index = InMemoryKeywordIndex(path=tmp_path)
        query = " ".join(rng.sample(WORDS, 3))
        expected = reference(docs, query)
        got = dict(index.search("ns", query, 1000))
        assert got.keys() == expected.keys(), (step, query)
        for doc_id, score in expected.items():
            assert got[doc_id] == pytest.approx(score, rel=1e-4), (step, doc_id)
        assert index.count("ns") == len(docs)
    index.close()
