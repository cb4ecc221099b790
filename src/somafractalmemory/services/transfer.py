"""Lossless JSONL export and import of a namespace: memories, links, history.

Format: one JSON object per line. The first line is a header
``{"kind": "header", "format": "sfm-jsonl", "version": 1, "namespace": ...}``;
then lines of kind ``memory`` (``Memory.to_dict``), ``history``
(``HistoryEntry.to_dict``) and ``link`` (``Link.to_dict``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidInput
from ..models import HistoryEntry, Link, Memory, memory_id, validate_payload
from .backends import Backends
from .indexer import Indexer

__all__ = ["TransferService"]

FORMAT = "sfm-jsonl"
BATCH = 1000


class TransferService:
    def __init__(self, namespace: str, backends: Backends, indexer: Indexer) -> None:
        self.namespace = namespace
        self.b = backends
        self.indexer = indexer

    def lines(self) -> Iterator[str]:
        """The export, line by line (streamable)."""
        header = {"kind": "header", "format": FORMAT, "version": 1, "namespace": self.namespace}
        yield json.dumps(header) + "\n"
        for memory in self.b.kv.iter_memories(self.namespace):
            yield json.dumps({"kind": "memory", **memory.to_dict()}) + "\n"
        for entry in self.b.kv.iter_history(self.namespace):
            yield json.dumps({"kind": "history", **entry.to_dict()}) + "\n"
        for link in self.b.graph.iter_links(self.namespace):
            yield json.dumps({"kind": "link", **link.to_dict()}) + "\n"

    def export(self, target: str | Path | IO[str]) -> int:
        """Write the export to a path or a text stream; return lines written."""
        if isinstance(target, (str, Path)):
            with open(target, "w", encoding="utf-8") as fh:
                return self.export(fh)
        count = 0
        for line in self.lines():
            target.write(line)
            count += 1
        return count

    def import_(
        self, source: str | Path | IO[str] | IO[bytes], progress: Callable[[int], None] | None = None
    ) -> dict[str, int]:
        """Read an export into this namespace (ids are recomputed for it).

        Memories replace those at the same coordinates with their exported
        versions and timestamps; history and links are added. Every line is
        validated before anything is written."""
        if isinstance(source, (str, Path)):
            with open(source, encoding="utf-8") as fh:
                return self.import_(fh, progress)
        memories: list[Memory] = []
        history: list[HistoryEntry] = []
        links: list[Link] = []
        for number, raw in enumerate(source, start=1):
            try:
                line = raw.decode() if isinstance(raw, bytes) else str(raw)
                if not line.strip():
                    continue
                data: Any = json.loads(line)
                kind = data.get("kind") if isinstance(data, dict) else None
                if kind == "header":
                    if data.get("format") != FORMAT:
                        raise ValueError(f"not an {FORMAT} export")
                elif kind == "memory":
                    m = Memory.from_dict({**data, "namespace": self.namespace})
                    m.payload = validate_payload(m.payload)
                    m.id = memory_id(self.namespace, m.coordinate)
                    memories.append(m)
                elif kind == "history":
                    h = HistoryEntry.from_dict({**data, "namespace": self.namespace})
                    h.memory_id = memory_id(self.namespace, h.coordinate)
                    history.append(h)
                elif kind == "link":
                    link = Link.from_dict({**data, "namespace": self.namespace})
                    link.from_id = memory_id(self.namespace, link.from_coord)
                    link.to_id = memory_id(self.namespace, link.to_coord)
                    links.append(link)
                else:
                    raise ValueError(f"unknown kind {kind!r}")
            except InvalidInput as exc:
                raise InvalidInput(f"line {number}.{exc.field}", exc.message) from None
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
                raise InvalidInput(f"line {number}", f"not a valid export line: {exc}") from None
        for start in range(0, max(len(memories), len(history)), BATCH):
            chunk = memories[start : start + BATCH]
            with self.b.index_lock:  # see services.follower
                self.b.kv.put_many(chunk, history[start : start + BATCH])
                self.indexer.index(chunk)
            self.b.retention.wrote(len(chunk))
            if progress:
                progress(len(chunk))
        if links:
            self.b.graph.add_links(links)
        self.b.vectors.flush()
        return {"memories": len(memories), "history": len(history), "links": len(links)}
