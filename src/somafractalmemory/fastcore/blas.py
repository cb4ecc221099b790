"""How the fast core multiplies a slab by a query vector.

A matrix-vector product through BLAS (``np.matmul``) reads the slab about
twice as fast as numpy's own loop (``np.einsum``) when BLAS runs in one
thread: 0.39 vs 0.87 ms for 12,000 x 384 on the 2-core machine of
``docs/BENCHMARKS.md``. With several BLAS threads it is faster still on an
idle machine, but its threads spin for the cores when they are busy (as in a
loaded server, where every worker process searches at once): the same
product then took 0.6 to 0.9 ms, and tens of milliseconds on a machine
loaded eight times over. So the fast core uses BLAS only where BLAS runs in
one thread, and ``einsum`` (always in the calling thread) elsewhere.

Processes that serve many callers (``soma serve``, ``soma worker``) call
``use_threads(settings.blas_threads)`` at start (``SOMA_BLAS_THREADS``,
default 1): one BLAS thread per process, the processes themselves spread
over the cores. An application embedding the library may call
``use_threads(1)`` too, or start Python with ``OPENBLAS_NUM_THREADS=1``.
"""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_info, threadpool_limits

__all__ = ["matvec", "single_threaded", "use_threads"]

F32 = npt.NDArray[np.float32]

_lock = threading.Lock()
_single: bool | None = None  # BLAS known to run in one thread (None: not looked yet)


def single_threaded() -> bool:
    """True when every BLAS library loaded in this process runs one thread
    (looked up once: the lookup walks the loaded libraries)."""
    global _single
    if _single is None:
        with _lock:
            if _single is None:
                blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
                _single = bool(blas) and all(lib.get("num_threads") == 1 for lib in blas)
    return _single


def use_threads(threads: int) -> None:
    """Let BLAS use ``threads`` threads in this whole process from now on
    (0 leaves it as it is)."""
    global _single
    if threads <= 0:
        return
    with _lock:
        threadpool_limits(limits=threads, user_api="blas")
        _single = None  # looked up again: a library may refuse the limit


def matvec(block: F32, query: F32) -> F32:
    """``block @ query`` for a C-contiguous float32 matrix and vector."""
    if single_threaded():
        out: F32 = np.matmul(block, query)
        return out
    loop: F32 = np.einsum("ij,j->i", block, query)
    return loop
