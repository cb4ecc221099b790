"""``IVectorStore.versions(namespace, ids)``: the per-id version check event
workers and read-your-writes use, on every vector adapter."""

from __future__ import annotations

import uuid

from somafractalmemory.interfaces.storage import IVectorStore

from .test_vector_contract import point, vec


def test_versions_of_some_ids(vector_store: IVectorStore, namespace: str) -> None:
    dim = vector_store.dim
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    assert vector_store.versions(namespace, [a]) == {}
    vector_store.upsert(namespace, [point(a, vec(dim, 1), version=1), point(b, vec(dim, 0, 1), version=4)])
    assert vector_store.versions(namespace, [a, b, c]) == {a: 1, b: 4}
    assert vector_store.versions(namespace, [b]) == {b: 4}
    assert vector_store.versions(namespace, []) == {}
    vector_store.upsert(namespace, [point(a, vec(dim, 1, 1), version=2)])
    vector_store.delete(namespace, [b])
    assert vector_store.versions(namespace, [a, b]) == {a: 2}
    assert vector_store.versions(namespace) == {a: 2}
