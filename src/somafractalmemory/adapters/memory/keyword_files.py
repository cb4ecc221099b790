"""Snapshot files of the in-process keyword index (``InMemoryKeywordIndex(path=...)``).

One ``<namespace>.bm25.npz`` per namespace (no pickles) holds the live
documents in compressed-sparse-row form: ``ids``, ``lengths`` (tokens per
document), the vocabulary, and for document ``d`` the term numbers
``term[ptr[d]:ptr[d+1]]`` with their counts ``tf``. Loading rebuilds the
postings with a few vectorised numpy operations (no tokenizing, no Python
loop per document); the index keeps each document's ``(term, tf)`` pairs in
the same form (``TermRows``).

The metadata records the change-feed checkpoint the snapshot reflects
(``fastcore.checkpoint``); files are read under a shared and written under
an exclusive directory lock, and a file is only replaced by a view at least
as new.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from ...errors import BackendUnavailable, ConfigurationError
from ...fastcore.checkpoint import Checkpoint, file_checkpoint, supersedes
from ...fastcore.files import atomic_write, dir_lock, file_stem

__all__ = ["SUFFIX", "Snapshot", "SnapshotFiles", "TermRows", "by_term"]

SUFFIX = ".bm25.npz"
FORMAT = 1
I32 = npt.NDArray[np.int32]


def by_term(
    terms: npt.NDArray[Any], *columns: npt.NDArray[Any]
) -> Iterator[tuple[int, list[npt.NDArray[Any]]]]:
    """Each distinct term number of ``terms`` (ascending) with its entries of
    the parallel arrays ``columns``, in their original order."""
    if len(terms) == 0:
        return
    order = np.argsort(terms, kind="stable")
    ordered = terms[order]
    picked = [column[order] for column in columns]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    ends = np.append(starts[1:], len(ordered))
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        yield int(ordered[start]), [column[start:end] for column in picked]


class TermRows:
    """The ``(term number, tf)`` pairs of each slot, in compressed-sparse-row
    form: slot ``s`` owns ``term[ptr[s]:ptr[s+1]]`` and ``tf[...]``. Rows are
    appended a batch at a time into arrays that grow by doubling."""

    def __init__(self, ptr: Any = None, term: Any = None, tf: Any = None) -> None:
        self._ptr: list[int] = [0] if ptr is None else ptr.tolist()
        n = self._ptr[-1]
        self._term = np.zeros(max(n, 64), dtype=np.int32)
        self._tf = np.zeros(max(n, 64), dtype=np.int32)
        if n:
            self._term[:n] = term
            self._tf[:n] = tf

    def __len__(self) -> int:
        return len(self._ptr) - 1

    def __getitem__(self, slot: int) -> tuple[I32, I32]:
        a, b = self._ptr[slot], self._ptr[slot + 1]
        return self._term[a:b], self._tf[a:b]

    def extend(self, per_row: npt.NDArray[np.int64], term: npt.NDArray[Any], tf: npt.NDArray[Any]) -> None:
        """Append ``len(per_row)`` rows; row ``i`` holds the next ``per_row[i]`` pairs."""
        start = self._ptr[-1]
        end = start + len(term)
        if end > len(self._term):
            size = max(end, 2 * len(self._term))
            for name in ("_term", "_tf"):
                grown = np.zeros(size, dtype=np.int32)
                grown[:start] = getattr(self, name)[:start]
                setattr(self, name, grown)
        self._term[start:end] = term
        self._tf[start:end] = tf
        self._ptr.extend((start + np.cumsum(per_row)).tolist())


@dataclass
class Snapshot:
    """One namespace's documents as stored (see module docstring)."""

    namespace: str
    ids: list[str]
    lengths: I32
    vocab: list[str]
    ptr: npt.NDArray[np.int64]
    term: I32
    tf: I32
    meta: dict[str, Any]

    def postings(self) -> Iterator[tuple[str, I32, npt.NDArray[np.float32]]]:
        """``(term, slots, tfs)`` per vocabulary term, slots ascending, tfs as float32."""
        doc_of = np.repeat(np.arange(len(self.ids), dtype=np.int32), np.diff(self.ptr))
        for t, (docs, tfs) in by_term(self.term, doc_of, self.tf.astype(np.float32)):
            yield self.vocab[t], docs, tfs

    @classmethod
    def build(
        cls,
        namespace: str,
        ids: list[str],
        lengths: list[int],
        postings: Iterator[tuple[str, I32, I32]],
    ) -> Snapshot:
        """From the live documents (slots ``0..n-1``) and each term's postings
        over those slots (other slot numbers: negative, dropped)."""
        vocab: list[str] = []
        docs, terms, tfs = [], [], []
        for word, slots, tf in postings:
            keep = slots >= 0
            if not keep.any():
                continue
            docs.append(slots[keep])
            terms.append(np.full(int(keep.sum()), len(vocab), dtype=np.int32))
            tfs.append(tf[keep])
            vocab.append(word)
        doc = np.concatenate(docs).astype(np.int64) if docs else np.zeros(0, dtype=np.int64)
        term = np.concatenate(terms) if terms else np.zeros(0, dtype=np.int32)
        tf_all = np.concatenate(tfs).astype(np.int32) if tfs else np.zeros(0, dtype=np.int32)
        order = np.lexsort((term, doc))
        ptr = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(np.bincount(doc, minlength=len(ids)), out=ptr[1:])
        return cls(
            namespace, ids, np.asarray(lengths, dtype=np.int32), vocab, ptr, term[order], tf_all[order], {}
        )

    def save(self, out: IO[bytes], extra: dict[str, Any]) -> None:
        meta = {**extra, "format": FORMAT, "namespace": self.namespace}
        np.savez(
            out,
            ids=_json(self.ids),
            vocab=_json(self.vocab),
            lengths=self.lengths,
            ptr=self.ptr,
            term=self.term,
            tf=self.tf,
            meta=_json(meta),
        )

    @classmethod
    def load(cls, source: IO[bytes]) -> Snapshot:
        with np.load(source, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes())
            if meta.get("format") != FORMAT:
                raise ValueError(f"unknown keyword snapshot format {meta.get('format')!r}")
            snap = cls(
                str(meta["namespace"]),
                [str(i) for i in json.loads(data["ids"].tobytes())],
                data["lengths"].astype(np.int32),
                [str(t) for t in json.loads(data["vocab"].tobytes())],
                data["ptr"].astype(np.int64),
                data["term"].astype(np.int32),
                data["tf"].astype(np.int32),
                meta,
            )
        if len(snap.ptr) != len(snap.ids) + 1 or len(snap.lengths) != len(snap.ids):
            raise ValueError("keyword snapshot arrays do not agree in length")
        return snap


def _json(value: Any) -> npt.NDArray[np.uint8]:
    return np.frombuffer(json.dumps(value, separators=(",", ":")).encode(), dtype=np.uint8)


class SnapshotFiles:
    """The directory of snapshot files, shared by processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _file(self, namespace: str) -> Path:
        return self.path / f"{file_stem(namespace)}{SUFFIX}"

    def load_all(self) -> list[tuple[Snapshot, Checkpoint | None]]:
        if not self.path.exists():
            return []
        out = []
        with dir_lock(self.path, exclusive=False):
            for file in sorted(self.path.glob(f"*{SUFFIX}")):
                try:
                    with open(file, "rb") as source:
                        snap = Snapshot.load(source)
                except (OSError, ValueError, KeyError) as exc:
                    raise ConfigurationError(f"cannot read keyword snapshot {file}: {exc}") from exc
                out.append((snap, file_checkpoint(snap.meta)))
        return out

    def _on_disk(self, file: Path) -> Checkpoint | None:
        try:
            with open(file, "rb") as source, np.load(source, allow_pickle=False) as data:
                return file_checkpoint(json.loads(data["meta"].tobytes()))
        except (OSError, ValueError, KeyError):
            return None

    def write(self, items: dict[str, Snapshot | None], mark: Checkpoint | None) -> None:
        """Write each namespace's snapshot (``None``: remove its file) unless
        the file on disk is newer than ``mark``; all under the directory lock."""
        if not items:
            return
        extra = {"checkpoint": None if mark is None else list(mark)}
        try:
            with dir_lock(self.path):
                for namespace, snap in items.items():
                    file = self._file(namespace)
                    if supersedes(self._on_disk(file), mark):
                        continue
                    if snap is None:
                        file.unlink(missing_ok=True)
                    else:
                        atomic_write(file, functools.partial(snap.save, extra=extra))
        except OSError as exc:
            raise BackendUnavailable("keyword index", f"cannot write {self.path}: {exc}") from exc
