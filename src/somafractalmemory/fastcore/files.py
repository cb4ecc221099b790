"""The fast core's files: names and crash-safe writes.

Every file is written next to its target as ``<file>.tmp``, fsynced, moved
over the target with ``os.replace`` and the directory fsynced: after a
crash a reader finds the old file or the new one, never a torn one.
Processes sharing a directory take ``dir_lock`` around reading (shared) and
writing (exclusive) a set of files that belong together.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote

__all__ = ["ANN_SUFFIX", "SLAB_SUFFIX", "atomic_write", "dir_lock", "file_stem", "fsync_replace"]

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


@contextlib.contextmanager
def dir_lock(directory: Path, exclusive: bool = True) -> Iterator[None]:
    """An advisory lock on ``directory/.lock`` held for the block (``flock``:
    released by the system if the process dies). Where ``fcntl`` is missing
    (Windows) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
