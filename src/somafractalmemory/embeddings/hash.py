"""A deterministic feature-hashing embedder, for tests and benchmarks only.

It captures shared words and word pairs, not meaning: "cat" and "kitten" are
as far apart as "cat" and "stock". Use the MiniLM embedder for real recall.

Each lowercase word token and each pair of adjacent words (bigram) is
hashed with BLAKE2b (stable across processes and machines, unlike
``hash()``) to a signed bucket of a ``dim``-wide vector; optionally the
character trigrams of each word are added too. Rows are L2-normalised and
an empty text gives the zero vector.

Speed comes from two choices: the BLAKE2b digest of a word is cached in a
bounded dict (a bigram's hash is mixed from its two word hashes, so it needs
no digest of its own), and the bucket arithmetic and the scatter into the
output run in numpy over the whole batch.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ..interfaces.storage import Vector

__all__ = ["HashEmbedder"]

_TOKEN = re.compile(r"\w+")
_U64 = npt.NDArray[np.uint64]
_BIGRAM_WEIGHT = 0.5
_TRIGRAM_WEIGHT = 0.25
_TRIGRAM_SALT = np.uint64(0x5851F42D4C957F2D)
_CHUNK = 1024  # texts scattered at once: keeps the float64 scratch array in cache


def _digest(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


def _mix(x: _U64) -> _U64:
    """splitmix64's finaliser: spreads every input bit over the output."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class HashEmbedder:
    """Feature hashing of words and word bigrams into ``dim`` signed buckets.

    For tests and benchmarks only: deterministic and fast (no model, no
    dependency beyond numpy), but lexical, not semantic. ``model_id`` is
    ``hash-<dim>`` (``hash-<dim>-c3`` with ``char_trigrams``).
    """

    def __init__(self, dim: int = 384, char_trigrams: bool = False, cache_size: int = 200_000) -> None:
        if dim < 2:
            raise ValueError("dim must be at least 2")
        self.dim = dim
        self.char_trigrams = char_trigrams
        self.model_id = f"hash-{dim}" + ("-c3" if char_trigrams else "")
        #: hashing a text costs microseconds, less than reading its stored vector
        self.reuse_vectors = False
        self._cache_size = cache_size
        self._cache: dict[str, int] = {}

    def embed(self, texts: Sequence[str]) -> Vector:
        """``(len(texts), dim)`` float32, rows L2-normalised (zero if no word)."""
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not one str")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), _CHUNK):
            out[start : start + _CHUNK] = self._embed_chunk(texts[start : start + _CHUNK])
        return out

    def _hashes(self, tokens: list[str]) -> _U64:
        cache = self._cache
        values = list(map(cache.get, tokens))
        if None in values:
            if len(cache) + values.count(None) > self._cache_size:
                cache.clear()
            for i, value in enumerate(values):
                if value is None:
                    token = tokens[i]
                    values[i] = digest = _digest(token)
                    if len(cache) < self._cache_size:
                        cache[token] = digest
        return np.array(values, dtype=np.uint64)

    def _embed_chunk(self, texts: Sequence[str]) -> Vector:
        tokenized = [_TOKEN.findall(text.lower()) for text in texts]
        counts = np.fromiter(map(len, tokenized), dtype=np.int64, count=len(tokenized))
        tokens = [token for words in tokenized for token in words]
        words = self._hashes(tokens)
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), counts)
        # A bigram joins word i and i+1 of the same text.
        same = rows[:-1] == rows[1:]
        with np.errstate(over="ignore"):
            pairs = _mix(words[:-1][same] * np.uint64(0x9E3779B97F4A7C15) + words[1:][same])
        groups = [(words, rows, 1.0), (pairs, rows[:-1][same], _BIGRAM_WEIGHT)]
        if self.char_trigrams:
            grams = [g[i : i + 3] for t in tokens for g in (f"<{t}>",) for i in range(len(t))]
            per_token = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
            # Salted so that the trigram "cat" is not the same feature as the word "cat".
            trigrams = _mix(self._hashes(grams) ^ _TRIGRAM_SALT)
            groups.append((trigrams, np.repeat(rows, per_token), _TRIGRAM_WEIGHT))
        return self._scatter(len(texts), groups)

    def _scatter(self, n: int, groups: list[tuple[_U64, npt.NDArray[np.int64], float]]) -> Vector:
        """Sum each feature's signed weight into bucket ``(h >> 1) % dim`` of its
        row (sign from the low bit), then L2-normalise the rows."""
        dim = np.uint64(self.dim)
        buckets = [((h >> np.uint64(1)) % dim).astype(np.int64) for h, _, _ in groups]
        index = np.concatenate([r * self.dim + b for b, (_, r, _) in zip(buckets, groups, strict=True)])
        signs = np.concatenate([w - 2.0 * w * (h & np.uint64(1)).astype(np.float64) for h, _, w in groups])
        flat = np.bincount(index, weights=signs, minlength=n * self.dim).astype(np.float64, copy=False)
        matrix = flat.reshape(n, self.dim)  # (bincount of nothing is int64, hence astype)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        np.divide(matrix, norms, out=matrix, where=norms > 0)
        return matrix.astype(np.float32)
