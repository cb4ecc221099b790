"""Change-feed positions recorded in snapshot files (``ISnapshotIndex``).

A snapshot file (a fast-core slab, an in-process keyword index) reflects
every change of the canonical store's feed up to a cursor: its
*checkpoint*, ``(feed_id, cursor)``, kept in the file's metadata. When
processes share the files, a process only replaces a file if its own view is
at least as new (``supersedes``), so the newest view wins whoever flushes
last; a process opening the file replays the changes after the checkpoint.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["Checkpoint", "file_checkpoint", "new_token", "supersedes"]

#: ``(feed_id, cursor)``: see ``IKeyValueStore.change_feed_id`` / ``change_seq``.
Checkpoint = tuple[str, int]


def file_checkpoint(meta: Mapping[str, Any]) -> Checkpoint | None:
    """The checkpoint in a file's metadata (``None``: none, or malformed)."""
    value = meta.get("checkpoint")
    if isinstance(value, (list, tuple)) and len(value) == 2:
        feed, seq = value
        if isinstance(feed, str) and isinstance(seq, int) and not isinstance(seq, bool):
            return feed, seq
    return None


def supersedes(on_disk: Checkpoint | None, ours: Checkpoint | None) -> bool:
    """True when the file on disk is strictly newer than our view of the same
    feed, so our write must be skipped. Without a position of ours (no
    follower) or with a file of another feed, ours is written."""
    return on_disk is not None and ours is not None and on_disk[0] == ours[0] and on_disk[1] > ours[1]


def new_token() -> str:
    """A random name for one written file (pairs an ANN file with its slab)."""
    return uuid.uuid4().hex
