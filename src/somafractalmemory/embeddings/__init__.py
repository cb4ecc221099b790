"""Embedders: text to L2-normalised float32 vectors (the ``IEmbedder`` port).

* ``OnnxMiniLMEmbedder``: all-MiniLM-L6-v2, int8 ONNX, loaded offline from
  installed packages (extra ``embeddings``). The default.
* ``HashEmbedder``: deterministic feature hashing, for tests and benchmarks.
* ``create_embedder``: picks one by name (see ``registry``).
"""

from __future__ import annotations

from .hash import HashEmbedder
from .onnx import OnnxMiniLMEmbedder
from .registry import EMBEDDERS, create_embedder

__all__ = ["EMBEDDERS", "HashEmbedder", "OnnxMiniLMEmbedder", "create_embedder"]
