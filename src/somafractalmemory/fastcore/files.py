"""The fast core's files: names and crash-safe writes.

Every file is written next to its target as ``<file>.tmp``, fsynced, moved
over the target with ``os.replace`` and the directory fsynced: after a
crash a reader finds the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO
from urllib.parse import quote

__all__ = ["ANN_SUFFIX", "SLAB_SUFFIX", "atomic_write", "file_stem", "fsync_replace"]

SLAB_SUFFIX = ".slab.npz"
ANN_SUFFIX = ".ann.usearch"


def file_stem(namespace: str) -> str:
    """A file name for a namespace: readable when short (``quote`` never emits ``%%``)."""
    stem = quote(namespace, safe="")
    return stem if len(stem) <= 120 else "%%" + hashlib.sha256(namespace.encode()).hexdigest()


def atomic_write(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    tmp = Path(f"{target}.tmp")
    try:
        with open(tmp, "wb") as out:
            write(out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_replace(tmp, target)


def fsync_replace(tmp: Path, target: Path) -> None:
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
