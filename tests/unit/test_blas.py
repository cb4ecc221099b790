"""The fast core's matrix-vector product: BLAS in one thread, numpy's loop otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from somafractalmemory.fastcore import blas


def _blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_both_paths_give_the_same_product(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    block = rng.standard_normal((500, 64)).astype(np.float32)
    query = rng.standard_normal(64).astype(np.float32)
    want = block.astype(np.float64) @ query.astype(np.float64)
    for single in (True, False):
        monkeypatch.setattr(blas, "_single", single)
        got = blas.matvec(block, query)
        assert got.dtype == np.float32
        assert got == pytest.approx(want, rel=1e-4, abs=1e-4)


def test_use_threads_limits_blas_and_is_seen_by_single_threaded() -> None:
    blas.use_threads(0)  # leaves BLAS alone
    assert blas.single_threaded() == (_blas_threads() == {1})
    blas.use_threads(1)
    assert _blas_threads() == {1}
    assert blas.single_threaded() is True
