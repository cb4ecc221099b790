"""Qdrant adapter (extra ``qdrant``): ``QdrantVectorStore`` for a server,
Qdrant Cloud, or Qdrant's local mode (a directory or ``:memory:``)."""

from __future__ import annotations

from .store import QdrantVectorStore, collection_name

__all__ = ["QdrantVectorStore", "collection_name"]
