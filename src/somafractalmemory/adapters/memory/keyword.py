"""In-process keyword index (``IKeywordIndex``): Okapi BM25 over ``text.tokenize``.

``score(d, q) = sum over distinct query terms t in d of
idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avgdl))`` with
``k1 = 1.2``, ``b = 0.75`` and ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))``
(always > 0), where ``N``, ``df`` and ``avgdl`` are those of the namespace.

Layout, per namespace: every indexed document gets a fresh integer *slot*;
each term has a postings list of ``(slot, tf)`` held in numpy arrays. A batch
of documents is added with a few numpy calls (terms numbered, ``(doc,
term)`` pairs counted with one ``np.unique``; a single document with a
``Counter``); its postings wait in one pending array triple and the next
query (or a removal that leaves a term without documents) moves every
pending posting to its term with one sort; a term's arrays grow by doubling
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
from .keyword_files import Snapshot, SnapshotFiles, TermRows, by_term

__all__ = ["InMemoryKeywordIndex"]

K1 = 1.2
B = 0.75


I32 = npt.NDArray[np.int32]
F32 = npt.NDArray[np.float32]
_NO_SLOTS: I32 = np.empty(0, dtype=np.int32)  # shared, never written in place
_NO_TF: F32 = np.empty(0, dtype=np.float32)


class _Postings:
    """The ``(slot, tf)`` pairs of one term, and their BM25 tf weights cached
    for the ``avgdl`` they were computed with."""

    __slots__ = ("_slots", "_tf", "avgdl", "size", "weights")

    def __init__(self, slots: I32 = _NO_SLOTS, tf: F32 = _NO_TF) -> None:
        self._slots = slots  # rows 0..size-1 are used; the rest is room to grow
        self._tf = tf
        self.size = len(slots)
        self.weights: F32 | None = None
        self.avgdl = 0.0

    def __len__(self) -> int:
        return self.size

    @property
    def slots(self) -> I32:
        return self._slots[: self.size]

    @property
    def tf(self) -> F32:
        return self._tf[: self.size]

    def extend(self, slots: I32, tf: F32) -> None:
        """Append postings; the arrays grow by doubling, so a common term's
        list is not copied whole for every document added."""
        end = self.size + len(slots)
        if end > len(self._slots):
            room = max(end, 2 * len(self._slots))
            grown_slots = np.empty(room, dtype=np.int32)
            grown_tf = np.empty(room, dtype=np.float32)
            grown_slots[: self.size] = self.slots
            grown_tf[: self.size] = self.tf
            self._slots, self._tf = grown_slots, grown_tf
        self._slots[self.size : end] = slots
        self._tf[self.size : end] = tf
        self.size = end
        self.weights = None

    def scored(self, lengths: F32, avgdl: float) -> tuple[I32, F32]:
        """Slots and ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``."""
        slots = self.slots
        if self.weights is None or self.avgdl != avgdl:
            tf = self.tf
            norm = np.float32(K1 * (1.0 - B)) + np.float32(K1 * B / avgdl) * lengths[slots]
            weights: F32 = (tf * np.float32(K1 + 1.0) / (tf + norm)).astype(np.float32, copy=False)
            self.weights, self.avgdl = weights, avgdl
            return slots, weights
        return slots, self.weights


class _Shard:
    """The index of one namespace. Terms are numbered (``vocab``); postings,
    document frequencies and each slot's ``(term, tf)`` rows use the numbers.
    New postings wait in ``pending`` (one array triple per added batch) and
    are merged into the per-term arrays by the next query, grouped by term
    with one sort, so adding a batch costs a few numpy calls, not a Python
    step per posting."""

    def __init__(self) -> None:
        self.slot_of: dict[str, int] = {}
        self.ids: list[str] = []
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []  # term number -> term
        self.terms = TermRows()
        self.lengths: list[int] = []
        self.length_array: F32 = np.empty(0, dtype=np.float32)
        self.dead: list[int] = []  # slots of replaced or removed documents
        self.postings: dict[int, _Postings] = {}
        self.pending: list[tuple[I32, I32, F32]] = []  # (term, slot, tf)
        self.df = np.zeros(64, dtype=np.int64)
        self.total_length = 0
        self.dead_postings = 0
        self.live_postings = 0

    def _numbers(self, tokens: list[str]) -> npt.NDArray[np.int64]:
        """The term numbers of ``tokens``, numbering new terms."""
        numbers = list(map(self.vocab.get, tokens))
        if None in numbers:
            for i, number in enumerate(numbers):
                if number is None:
                    number = self.vocab.get(tokens[i])
                    if number is None:
                        number = self.vocab[tokens[i]] = len(self.words)
                        self.words.append(tokens[i])
                    numbers[i] = number
            if len(self.words) > len(self.df):
                grown = np.zeros(max(len(self.words), 2 * len(self.df)), dtype=np.int64)
                grown[: len(self.df)] = self.df
                self.df = grown
        return np.fromiter(numbers, dtype=np.int64, count=len(numbers))

    def add_many(self, docs: Sequence[tuple[str, list[str]]]) -> None:
        """Index documents (a later one with the same id replaces an earlier)."""
        last = {doc_id: i for i, (doc_id, _) in enumerate(docs)}
        if len(last) != len(docs):
            docs = [docs[i] for i in sorted(last.values())]
        for doc_id, _ in docs:
            self.drop(doc_id)
        base = len(self.ids)
        lengths = [len(tokens) for _, tokens in docs]
        flat = [token for _, tokens in docs for token in tokens]
        numbers = self._numbers(flat)
        if len(docs) == 1:  # one document (a single store): counted without numpy's sort
            tally = Counter(numbers.tolist())
            terms = np.fromiter(sorted(tally), dtype=np.int64, count=len(tally))
            counts = np.fromiter(map(tally.__getitem__, terms.tolist()), dtype=np.int64, count=len(tally))
            rows = np.zeros(len(terms), dtype=np.int64)
            self.df[terms] += 1  # each term once
        else:
            doc = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
            width = max(len(self.words), 1)
            pairs, counts = np.unique(doc * width + numbers, return_counts=True)  # by doc, then term
            rows, terms = pairs // width, pairs % width
            self.df[: len(self.words)] += np.bincount(terms, minlength=len(self.words))
        self.terms.extend(np.bincount(rows, minlength=len(docs)), terms, counts)
        if len(terms):
            self.pending.append(
                (terms.astype(np.int32), (rows + base).astype(np.int32), counts.astype(np.float32))
            )
        ids = [doc_id for doc_id, _ in docs]
        self.slot_of.update(zip(ids, range(base, base + len(ids)), strict=True))
        self.ids.extend(ids)
        self.lengths.extend(lengths)
        self.total_length += len(flat)
        self.live_postings += len(terms)

    def merge(self) -> None:
        """Move the pending postings into their terms' arrays."""
        if not self.pending:
            return
        terms, slots, tfs = (np.concatenate(part) for part in zip(*self.pending, strict=True))
        self.pending = []
        for number, (term_slots, term_tfs) in by_term(terms, slots, tfs):  # slots stay ascending
            postings = self.postings.get(number)
            if postings is None:
                self.postings[number] = _Postings(term_slots, term_tfs)
            else:
                postings.extend(term_slots, term_tfs)

    def drop(self, doc_id: str) -> None:
        slot = self.slot_of.pop(doc_id, None)
        if slot is None:
            return
        self.dead.append(slot)
        self.total_length -= self.lengths[slot]
        terms, _ = self.terms[slot]
        self.live_postings -= len(terms)
        self.dead_postings += len(terms)
        self.df[terms] -= 1
        gone = terms[self.df[terms] <= 0]
        if len(gone):  # every posting of these terms is dead: drop them now,
            self.merge()  # with their pending ones (an update of a live term needs no merge)
            for number in gone.tolist():
                self.dead_postings -= len(self.postings.pop(number))

    def doc_lengths(self) -> F32:
        if len(self.length_array) != len(self.lengths):
            tail = np.asarray(self.lengths[len(self.length_array) :], dtype=np.float32)
            self.length_array = np.concatenate([self.length_array, tail])
        return self.length_array

    def search(self, query_terms: set[str], limit: int) -> list[tuple[str, float]]:
        n_docs = len(self.slot_of)
        numbers = [n for t in query_terms if (n := self.vocab.get(t)) is not None and self.df[n] > 0]
        if not numbers or n_docs == 0 or limit <= 0:
            return []
        self.merge()
        lengths = self.doc_lengths()
        avgdl = max(self.total_length / n_docs, 1e-9)
        scores = np.zeros(len(self.ids), dtype=np.float32)
        for number in numbers:
            slots, weights = self.postings[number].scored(lengths, avgdl)
            df = int(self.df[number])
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
        self.merge()
        live = sorted(self.slot_of.values())
        remap = np.full(len(self.ids), -1, dtype=np.int32)
        remap[live] = np.arange(len(live), dtype=np.int32)

        def postings() -> Iterator[tuple[str, I32, I32]]:
            for number, p in self.postings.items():
                yield self.words[number], remap[p.slots], p.tf.astype(np.int32)

        ids = [self.ids[s] for s in live]
        return Snapshot.build(namespace, ids, [self.lengths[s] for s in live], postings())

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> _Shard:
        shard = cls()
        shard.ids = list(snap.ids)
        shard.slot_of = {doc_id: slot for slot, doc_id in enumerate(snap.ids)}
        shard.words = list(snap.vocab)
        shard.vocab = {word: number for number, word in enumerate(snap.vocab)}
        shard.terms = TermRows(snap.ptr, snap.term, snap.tf)
        shard.lengths = snap.lengths.tolist()
        shard.length_array = snap.lengths.astype(np.float32)
        shard.total_length = int(snap.lengths.sum())
        shard.live_postings = len(snap.term)
        shard.df = np.bincount(snap.term, minlength=max(len(snap.vocab), 64)).astype(np.int64)
        for word, slots, tf in snap.postings():
            shard.postings[shard.vocab[word]] = _Postings(slots, tf)
        return shard

    def compacted(self) -> _Shard:
        fresh = _Shard()
        docs = []
        for doc_id, slot in sorted(self.slot_of.items(), key=lambda item: item[1]):
            terms, tfs = self.terms[slot]
            docs.append(
                (
                    doc_id,
                    [
                        self.words[t]
                        for t, tf in zip(terms.tolist(), tfs.tolist(), strict=True)
                        for _ in range(tf)
                    ],
                )
            )
        fresh.add_many(docs)
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
            shard.add_many(tokenized)
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
