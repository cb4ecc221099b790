"""The fast core's files: one slab (and ANN index) file per namespace, shared safely.

``SlabFiles`` is the persistence half of ``FastCoreVectorStore``. With a
``path``, ``flush()`` (and ``close()``) write each changed namespace as one
``.slab.npz`` file and, when it exists, its ANN index as ``.ann.usearch``,
each atomically (temporary file + ``os.replace``); opening the store loads
them.

Several processes may share ``path`` (``ISnapshotIndex``, see
``checkpoint.py``): files are read under a shared and written under an
exclusive directory lock; a slab file records the change-feed position it
reflects (``set_checkpoint``) and is only replaced by a view at least as
new; an ANN file is written with its slab, or alone only beside the very
slab it was built from (a random ``token`` names each slab file).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BackendUnavailable, ConfigurationError
from .ann import AnnIndex, AnnParams, ann_available
from .checkpoint import Checkpoint, file_checkpoint, new_token, supersedes
from .files import ANN_SUFFIX, SLAB_SUFFIX, atomic_write, dir_lock, file_stem, fsync_replace
from .slab import Slab, read_meta

__all__ = ["SlabFiles", "Space"]


class Space:
    """A namespace: its slab, its ANN index (if built) and flush state."""

    def __init__(self, slab: Slab) -> None:
        self.slab = slab
        self.ann: AnnIndex | None = None
        self.builder: threading.Thread | None = None
        self.dirty = False
        self.ann_saved = False
        #: ANN stays off while the namespace is smaller than this (set when
        #: a build could not reach the target overlap).
        self.ann_off_below = 0
        #: The change-feed position of the file it was loaded from, and that file's token.
        self.checkpoint: Checkpoint | None = None
        self.token: str | None = None


class SlabFiles:
    """Loading, flushing and checkpoints of ``FastCoreVectorStore`` (a mixin:
    the store holds the attributes and ``_install``)."""

    dim: int
    _lock: threading.RLock
    _spaces: dict[str, Space]
    _path: Path | None
    _mark: Checkpoint | None
    _discarded: set[str]
    _use_ann: bool
    _params: AnnParams

    def _install(self, space: Space, index: AnnIndex, built: npt.NDArray[np.uint64] | None) -> int:
        raise NotImplementedError

    def _check_open(self) -> None:
        raise NotImplementedError

    def checkpoints(self) -> dict[str, Checkpoint | None]:
        with self._lock:
            return {ns: space.checkpoint for ns, space in self._spaces.items()}

    def set_checkpoint(self, feed_id: str, seq: int) -> None:
        with self._lock:
            self._mark = (str(feed_id), int(seq))

    def discard(self, namespace: str) -> None:
        with self._lock:
            if self._spaces.pop(namespace, None) is not None:
                self._discarded.add(namespace)

    def flush(self) -> None:
        with self._lock:
            self._check_open()
            self._flush()

    def _flush(self) -> None:
        if self._path is None:
            return
        try:
            with dir_lock(self._path):
                for namespace, space in self._spaces.items():
                    self._flush_space(namespace, space)
                for namespace in self._discarded - set(self._spaces):
                    self._drop_files(namespace)
                self._discarded.clear()
        except OSError as exc:
            raise BackendUnavailable("fast core", f"cannot write {self._path}: {exc}") from exc

    def _files(self, namespace: str) -> tuple[Path, Path]:
        assert self._path is not None
        base = self._path / file_stem(namespace)
        return Path(f"{base}{SLAB_SUFFIX}"), Path(f"{base}{ANN_SUFFIX}")

    def _on_disk(self, slab_file: Path) -> dict[str, Any] | None:
        try:
            with open(slab_file, "rb") as source:
                return read_meta(source)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError):
            return {}  # unreadable: anything replaces it

    def _flush_space(self, namespace: str, space: Space) -> None:
        """Write one namespace's files (under the directory lock)."""
        if not space.dirty and (space.ann is None or space.ann_saved):
            return
        slab_file, ann_file = self._files(namespace)
        meta = self._on_disk(slab_file)
        if space.dirty:
            if meta is not None and supersedes(file_checkpoint(meta), self._mark):
                return  # another process wrote a newer view; ours is not saved
            ann_file.unlink(missing_ok=True)  # a crash before the new one is written leaves none
            token = new_token()
            extra = {"token": token, "checkpoint": None if self._mark is None else list(self._mark)}
            atomic_write(slab_file, functools.partial(space.slab.save, namespace=namespace, extra=extra))
            space.dirty, space.token = False, token
        elif meta is None or meta.get("token") != space.token:
            return  # the file on disk is not the slab this ANN index was built from
        if space.ann is not None:
            tmp = Path(f"{ann_file}.tmp")
            space.ann.save(str(tmp))
            fsync_replace(tmp, ann_file)
            space.ann_saved = True

    def _drop_files(self, namespace: str) -> None:
        slab_file, ann_file = self._files(namespace)
        meta = self._on_disk(slab_file)
        if meta is not None and not supersedes(file_checkpoint(meta), self._mark):
            slab_file.unlink(missing_ok=True)
            ann_file.unlink(missing_ok=True)

    def _load(self, root: Path) -> None:
        if not root.exists():
            return
        with dir_lock(root, exclusive=False):
            for slab_file in sorted(root.glob(f"*{SLAB_SUFFIX}")):
                self._load_file(slab_file)

    def _load_file(self, slab_file: Path) -> None:
        try:
            with open(slab_file, "rb") as source:
                namespace, slab = Slab.load(source)
            with open(slab_file, "rb") as source:
                meta = read_meta(source)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigurationError(f"cannot read vector slab {slab_file}: {exc}") from exc
        if slab.dim != self.dim:
            raise ConfigurationError(
                f"{slab_file} holds {slab.dim}-d vectors but this store is {self.dim}-d; "
                "re-embed with `soma reindex` or point the store at another path"
            )
        space = self._spaces[namespace] = Space(slab)
        space.checkpoint, space.token = file_checkpoint(meta), meta.get("token")
        ann_file = Path(str(slab_file)[: -len(SLAB_SUFFIX)] + ANN_SUFFIX)
        if self._use_ann and ann_file.exists() and ann_available():
            index = AnnIndex.restore(str(ann_file), self.dim, self._params)
            if index is not None:
                space.ann_saved = self._install(space, index, None) == 0
                scaled = slab.vectors[: slab.size] * slab.importance[: slab.size, None]
                if index.calibrate(slab.keys[: slab.size], scaled) is None:
                    space.ann, space.ann_off_below = None, 2 * slab.size
