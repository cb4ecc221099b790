"""Lifecycle policies: TTL expiry, decay of fields, size pruning, consolidation."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from ..errors import InvalidInput
from ..models import Memory, MemoryType, now
from ..text import tokenize
from .backends import Backends
from .graph import GraphService
from .store import StoreService

__all__ = ["LifecycleService"]


class LifecycleService:
    def __init__(self, namespace: str, backends: Backends, store: StoreService, graph: GraphService) -> None:
        self.namespace = namespace
        self.b = backends
        self.store = store
        self.graph = graph
        self._last_decay = now()

    def run_once(self) -> dict[str, int]:
        """Apply every policy once: expire, decay, prune. Returns counts."""
        at = now()
        opts = self.b.options
        expired = [
            m.coordinate
            for m in self.b.kv.iter_memories(self.namespace)
            if m.expires_at is not None and m.expires_at <= at
        ]
        self.store.delete_many(expired)
        decayed = 0
        if opts.decay_enabled and opts.decay_fields:
            periods = (at - self._last_decay) / opts.decay_interval_seconds
            self._last_decay = at
            updates = []
            for m in self.b.kv.iter_memories(self.namespace):
                payload = dict(m.payload)
                changed = False
                for key, rate in opts.decay_fields.items():
                    value = payload.get(key)
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                        payload[key] = value * math.exp(-rate * periods)
                        changed = True
                if changed:
                    updates.append((m.coordinate, payload, m.memory_type))
            if updates:
                decayed = len(self.store.store_many(updates))
        pruned = 0
        limit = opts.max_memory_size
        total = self.b.kv.counts(self.namespace)["total"]
        if limit is not None and total > limit:
            victims = sorted(
                self.b.kv.iter_memories(self.namespace), key=lambda m: (m.importance, m.updated_at)
            )[: total - limit]
            pruned = len(self.store.delete_many([m.coordinate for m in victims]))
        return {"expired": len(expired), "decayed": decayed, "pruned": pruned}

    def consolidate(self, window_seconds: float) -> list[Memory]:
        """Summarise the episodic memories of the last ``window_seconds`` into
        one semantic memory per tag (untagged ones together), stored at a free
        coordinate and linked ``consolidated_from`` to each source."""
        if (
            isinstance(window_seconds, bool)
            or not isinstance(window_seconds, (int, float))
            or not window_seconds > 0
        ):
            raise InvalidInput("window_seconds", "must be a number > 0")
        since = now() - float(window_seconds)
        groups: dict[str, list[Memory]] = {}
        for m in self.b.kv.iter_memories(self.namespace, MemoryType.EPISODIC):
            stamp = m.payload.get("timestamp", m.created_at)
            if not isinstance(stamp, (int, float)) or stamp < since:
                continue
            if self.b.graph.neighbors(self.namespace, m.id, "consolidated_from", "in", 1):
                continue  # already summarised once
            tags = m.payload.get("tags") or ["_all"]
            groups.setdefault(str(tags[0]), []).append(m)
        created = []
        for tag, members in sorted(groups.items()):
            if len(members) < 2:
                continue
            words = Counter(t for m in members for t in tokenize(m.text))
            summary: dict[str, Any] = {
                "fact": f"{len(members)} episodes"
                + (f" tagged {tag}" if tag != "_all" else "")
                + ": "
                + "; ".join(m.text.splitlines()[0][:120] for m in members[:5] if m.text),
                "keywords": [w for w, _ in words.most_common(8)],
                "consolidated": True,
                "source_count": len(members),
                "importance": max(m.importance for m in members),
            }
            if tag != "_all":
                summary["tags"] = [tag]
            memory = self.store.remember(summary, memory_type=MemoryType.SEMANTIC)
            for m in members:
                self.graph.link(memory.coordinate, m.coordinate, "consolidated_from")
            created.append(memory)
        return created
