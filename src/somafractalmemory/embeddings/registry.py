"""The embedder factory: one registry row per embedder, imported lazily.

``create_embedder("minilm")`` (the default) loads all-MiniLM-L6-v2 once per
process and hands the same instance to every later caller with the same
arguments; ``create_embedder("hash")`` gives the test embedder. The
environment variable ``SOMA_FORCE_HASH_EMBEDDINGS`` (``1``/``true``/``yes``)
turns every request into the hash embedder, so test suites never load the
model.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, MissingDependency
from ..interfaces.storage import IEmbedder

__all__ = ["EMBEDDERS", "create_embedder"]

#: name -> (module, class, extra that installs its dependencies or None).
EMBEDDERS: dict[str, tuple[str, str, str | None]] = {
    "hash": ("somafractalmemory.embeddings.hash", "HashEmbedder", None),
    "minilm": ("somafractalmemory.embeddings.onnx", "OnnxMiniLMEmbedder", "embeddings"),
}
_ALIASES = {"all-minilm-l6-v2": "minilm", "all-minilm-l6-v2-int8": "minilm"}
_TRUE = ("1", "true", "yes")


def _load(name: str) -> Any:
    module, attribute, extra = EMBEDDERS[name]
    try:
        return getattr(importlib.import_module(module), attribute)
    except ImportError as exc:
        if extra is None or isinstance(exc, MissingDependency):
            raise
        raise MissingDependency(exc.name or module, extra) from exc


@functools.lru_cache(maxsize=4)
def _minilm(model_path: str | None, tokenizer_path: str | None, threads: int | None) -> IEmbedder:
    embedder: IEmbedder = _load("minilm")(
        model_path=model_path, tokenizer_path=tokenizer_path, intra_op_threads=threads
    )
    return embedder


def create_embedder(
    model: str | None = None,
    dim: int | None = None,
    force_hash: bool = False,
    *,
    model_path: str | Path | None = None,
    tokenizer_path: str | Path | None = None,
    threads: int | None = None,
) -> IEmbedder:
    """The embedder called ``model`` (default ``minilm``).

    ``dim`` sizes the hash embedder (default 384); MiniLM is 384 wide and
    rejects any other ``dim``. ``model_path``, ``tokenizer_path`` and
    ``threads`` (onnxruntime intra-op threads) apply to MiniLM only.
    Raises ``ConfigurationError`` for an unknown name and
    ``MissingDependency`` when the embedder's extra is not installed.
    """
    forced = force_hash or os.environ.get("SOMA_FORCE_HASH_EMBEDDINGS", "").strip().lower() in _TRUE
    key = (model or "minilm").strip().lower()
    name = _ALIASES.get(key, key)
    if name not in EMBEDDERS:
        known = ", ".join(sorted([*EMBEDDERS, *_ALIASES]))
        raise ConfigurationError(f"unknown embedding model {model!r}; known: {known}")
    if forced or name == "hash":
        embedder: IEmbedder = _load("hash")(dim=dim or 384)
        return embedder
    if dim is not None and dim != 384:
        raise ConfigurationError(f"model {model!r} produces 384-dimensional vectors, not {dim}")
    return _minilm(
        str(model_path) if model_path else None, str(tokenizer_path) if tokenizer_path else None, threads
    )
