"""In-process keyword index (``IKeywordIndex``): Okapi BM25 over ``text.tokenize``.

``score(d, q) = sum over distinct query terms t in d of
idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avgdl))`` with
``k1 = 1.2``, ``b = 0.75`` and ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))``
(always > 0), where ``N``, ``df`` and ``avgdl`` are those of the namespace.

Layout, per namespace: every indexed document gets a fresh integer *slot*;
each term has a postings list of ``(slot, tf)`` held in numpy arrays, with
appends buffered in Python lists and merged when the term is next queried
(amortised O(1) per posting). Each term also caches the tf part of its BM25
weights for the current ``avgdl``, so a repeated term costs one gather and
one add. Replacing or removing a document only marks its slot dead and fixes
the document frequencies; dead slots are zeroed at query time and dropped
by a rebuild once dead postings outnumber the live ones. A query touches
only the postings of its terms, accumulating into one dense float32 array.

With ``path``, each namespace is saved as a snapshot file on ``flush`` /
``close`` and loaded at open (``keyword_files.py``), tagged with the
change-feed position it reflects (``ISnapshotIndex``), so a process opening
it replays only the changes made since instead of re-tokenizing everything.
"""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ...fastcore.checkpoint import Checkpoint
from ...text import tokenize
from .keyword_files import Snapshot, SnapshotFiles, TermRows

__all__ = ["InMemoryKeywordIndex"]

K1 = 1.2
B = 0.75


_NO_SLOTS = np.empty(0, dtype=np.int32)  # shared, never written in place
_NO_TF = np.empty(0, dtype=np.float32)


class _Postings:
    """The ``(slot, tf)`` pairs of one term, and their BM25 tf weights cached
    for the ``avgdl`` they were computed with."""

    __slots__ = ("avgdl", "pending_slots", "pending_tf", "slots", "tf", "weights")

    def __init__(
        self, slots: npt.NDArray[np.int32] | None = None, tf: npt.NDArray[np.float32] | None = None
    ) -> None:
        self.slots: npt.NDArray[np.int32] = _NO_SLOTS if slots is None else slots
        self.tf: npt.NDArray[np.float32] = _NO_TF if tf is None else tf
        self.pending_slots: list[int] = []
        self.pending_tf: list[int] = []
        self.weights: npt.NDArray[np.float32] | None = None
        self.avgdl = 0.0

    def count(self) -> int:
        return len(self.slots) + len(self.pending_slots)

    def scored(
        self, lengths: npt.NDArray[np.float32], avgdl: float
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """Slots and ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``."""
        if self.pending_slots:
            self.slots = np.concatenate([self.slots, np.asarray(self.pending_slots, dtype=np.int32)])
            self.tf = np.concatenate([self.tf, np.asarray(self.pending_tf, dtype=np.float32)])
            self.pending_slots.clear()
            self.pending_tf.clear()
            self.weights = None
        if self.weights is None or self.avgdl != avgdl:
            norm = np.float32(K1 * (1.0 - B)) + np.float32(K1 * B / avgdl) * lengths[self.slots]
            weights: npt.NDArray[np.float32] = (self.tf * np.float32(K1 + 1.0) / (self.tf + norm)).astype(
                np.float32, copy=False
            )
            self.weights, self.avgdl = weights, avgdl
            return self.slots, weights
        return self.slots, self.weights


class _Shard:
    """The index of one namespace."""

    def __init__(self) -> None:
        self.slot_of: dict[str, int] = {}
        self.ids: list[str] = []
        self.terms = TermRows()  # (term, tf) of each slot
        self.lengths: list[int] = []
        self.length_array: npt.NDArray[np.float32] = np.empty(0, dtype=np.float32)
        self.dead: list[int] = []  # slots of replaced or removed documents
        self.postings: dict[str, _Postings] = {}
        self.df: Counter[str] = Counter()
        self.total_length = 0
        self.dead_postings = 0
        self.live_postings = 0

    def add(self, doc_id: str, tokens: list[str]) -> None:
        self.drop(doc_id)
        slot = len(self.ids)
        tf = Counter(tokens)
        self.slot_of[doc_id] = slot
        self.ids.append(doc_id)
        self.terms.append(tuple(tf.items()))
        self.lengths.append(len(tokens))
        self.total_length += len(tokens)
        self.live_postings += len(tf)
        for term, count in tf.items():
            postings = self.postings.get(term)
            if postings is None:
                postings = self.postings[term] = _Postings()
            postings.pending_slots.append(slot)
            postings.pending_tf.append(count)
            self.df[term] += 1

    def drop(self, doc_id: str) -> None:
        slot = self.slot_of.pop(doc_id, None)
        if slot is None:
            return
        self.dead.append(slot)
        self.total_length -= self.lengths[slot]
        terms = self.terms[slot]
        self.live_postings -= len(terms)
        self.dead_postings += len(terms)
        for term, _ in terms:
            self.df[term] -= 1
            if self.df[term] <= 0:  # every posting of the term is dead: drop them now
                del self.df[term]
                self.dead_postings -= self.postings.pop(term).count()

    def doc_lengths(self) -> npt.NDArray[np.float32]:
        if len(self.length_array) != len(self.lengths):
            tail = np.asarray(self.lengths[len(self.length_array) :], dtype=np.float32)
            self.length_array = np.concatenate([self.length_array, tail])
        return self.length_array

    def search(self, query_terms: set[str], limit: int) -> list[tuple[str, float]]:
        n_docs = len(self.slot_of)
        terms = [t for t in query_terms if t in self.postings]
        if not terms or n_docs == 0 or limit <= 0:
            return []
        lengths = self.doc_lengths()
        avgdl = max(self.total_length / n_docs, 1e-9)
        scores = np.zeros(len(self.ids), dtype=np.float32)
        for term in terms:
            slots, weights = self.postings[term].scored(lengths, avgdl)
            df = self.df[term]
            idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
            scores[slots] += np.float32(idf) * weights
        if self.dead:
            scores[self.dead] = 0.0
        hits = np.flatnonzero(scores > 0)
        if len(hits) > limit:
            hits = hits[np.argpartition(-scores[hits], limit - 1)[:limit]]
        return sorted(((self.ids[s], float(scores[s])) for s in hits), key=lambda h: (-h[1], h[0]))

    def snapshot(self, namespace: str) -> Snapshot:
        """The live documents, renumbered ``0..n-1`` in slot order."""
        live = sorted(self.slot_of.values())
        remap = np.full(len(self.ids), -1, dtype=np.int32)
        remap[live] = np.arange(len(live), dtype=np.int32)

        def postings() -> Iterator[tuple[str, npt.NDArray[np.int32], npt.NDArray[np.int32]]]:
            for term, p in self.postings.items():
                slots = np.concatenate([p.slots, np.asarray(p.pending_slots, dtype=np.int32)])
                tf = np.concatenate([p.tf, np.asarray(p.pending_tf, dtype=np.float32)])
                yield term, remap[slots], tf.astype(np.int32)

        ids = [self.ids[s] for s in live]
        return Snapshot.build(namespace, ids, [self.lengths[s] for s in live], postings())

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> _Shard:
        shard = cls()
        shard.ids = list(snap.ids)
        shard.slot_of = {doc_id: slot for slot, doc_id in enumerate(snap.ids)}
        shard.terms = TermRows(snap.vocab, snap.ptr, snap.term, snap.tf)
        shard.lengths = snap.lengths.tolist()
        shard.length_array = snap.lengths.astype(np.float32)
        shard.total_length = int(snap.lengths.sum())
        shard.live_postings = len(snap.term)
        for term, slots, tf in snap.postings():
            shard.postings[term] = _Postings(slots, tf)
            shard.df[term] = len(slots)
        return shard

    def compacted(self) -> _Shard:
        fresh = _Shard()
        for doc_id, slot in sorted(self.slot_of.items(), key=lambda item: item[1]):
            fresh.add(doc_id, [term for term, tf in self.terms[slot] for _ in range(tf)])
        return fresh


class InMemoryKeywordIndex:
    """``IKeywordIndex`` kept in process memory (BM25, k1=1.2, b=0.75)."""

    name = "memory"

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._shards: dict[str, _Shard] = {}
        self._lock = threading.Lock()
        self._files = SnapshotFiles(Path(path)) if path is not None else None
        self._loaded: dict[str, Checkpoint | None] = {}
        self._dirty: set[str] = set()
        self._mark: Checkpoint | None = None
        if self._files is not None:
            for snap, checkpoint in self._files.load_all():
                self._shards[snap.namespace] = _Shard.from_snapshot(snap)
                self._loaded[snap.namespace] = checkpoint

    def index(self, namespace: str, docs: Sequence[tuple[str, str]]) -> None:
        tokenized = [(doc_id, tokenize(text)) for doc_id, text in docs]
        with self._lock:
            self._dirty.add(namespace)
            shard = self._shards.setdefault(namespace, _Shard())
            for doc_id, tokens in tokenized:
                shard.add(doc_id, tokens)
            self._maybe_compact(namespace, shard)

    def remove(self, namespace: str, ids: Sequence[str]) -> None:
        with self._lock:
            shard = self._shards.get(namespace)
            if shard is None:
                return
            self._dirty.add(namespace)
            for doc_id in ids:
                shard.drop(doc_id)
            if not shard.slot_of:
                del self._shards[namespace]
            else:
                self._maybe_compact(namespace, shard)

    def _maybe_compact(self, namespace: str, shard: _Shard) -> None:
        if shard.dead_postings > max(shard.live_postings, 1024):
            self._shards[namespace] = shard.compacted()

    def search(self, namespace: str, query: str, limit: int) -> list[tuple[str, float]]:
        terms = set(tokenize(query))
        with self._lock:
            shard = self._shards.get(namespace)
            return shard.search(terms, limit) if shard is not None else []

    def count(self, namespace: str) -> int:
        with self._lock:
            shard = self._shards.get(namespace)
            return len(shard.slot_of) if shard is not None else 0

    # -- snapshots (ISnapshotIndex) ---------------------------------------------

    def checkpoints(self) -> dict[str, Checkpoint | None]:
        with self._lock:
            return dict(self._loaded)

    def set_checkpoint(self, feed_id: str, seq: int) -> None:
        with self._lock:
            self._mark = (str(feed_id), int(seq))

    def discard(self, namespace: str) -> None:
        with self._lock:
            self._shards.pop(namespace, None)
            self._loaded.pop(namespace, None)
            self._dirty.add(namespace)

    def flush(self) -> None:
        """Write the snapshot of every changed namespace (with ``path``)."""
        if self._files is None:
            return
        with self._lock:
            items = {
                ns: (shard.snapshot(ns) if (shard := self._shards.get(ns)) is not None else None)
                for ns in self._dirty
            }
            mark = self._mark
            self._dirty = set()
        self._files.write(items, mark)

    def health(self) -> None:
        return None

    def close(self) -> None:
        self.flush()
