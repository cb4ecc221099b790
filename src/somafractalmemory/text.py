"""The keyword tokenizer shared by every keyword index.

Every keyword backend (in-process BM25, SQLite FTS5, PostgreSQL full-text
search) indexes and queries the output of :func:`tokenize`, so a document
matches the same query terms on every backend and only the scoring formula's
details differ.

The rules, applied in order:

1. **Case folding**: ``str.casefold()`` (a stronger ``lower()``: ``"Straße"``
   becomes ``"strasse"``).
2. **Word split**: the maximal runs of the regular expression ``\\w+``
   (Unicode letters, digits and ``_``); everything else separates words.
3. **Stopwords**: the words of :data:`STOPWORDS` (a small English list) are
   dropped, as is every one-character word.
4. **Light stemming** of purely alphabetic words (``str.isalpha``), see
   :func:`stem`: plural ``-ies``/``-sses``/``-s``, then ``-ing``/``-ed``
   (with undoubling of a final double consonant), then a final ``-e``.
   A rule only fires when at least three characters remain, so short words
   are left alone. ``documents``, ``documenting`` and ``documented`` all give
   ``document``; ``stores``, ``stored`` and ``storing`` all give ``stor``.

The tokenizer is deterministic and has no state; it never returns an empty
or one-character token.
"""

from __future__ import annotations

import functools
import re
from functools import lru_cache

__all__ = ["STOPWORDS", "stem", "tokenize"]

#: Words dropped before indexing and querying.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "after",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "been",
        "before",
        "being",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "him",
        "his",
        "how",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "just",
        "me",
        "my",
        "no",
        "nor",
        "not",
        "of",
        "on",
        "or",
        "our",
        "out",
        "over",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "too",
        "up",
        "us",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)

_WORD = re.compile(r"\w+")
_VOWELS = frozenset("aeiouy")


def _undouble(word: str) -> str:
    """``runn`` -> ``run``; double ``l``, ``s``, ``z`` and vowels are kept."""
    if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "lsz" and word[-1] not in _VOWELS:
        return word[:-1]
    return word


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The light stem of one case-folded word (see the module docstring)."""
    if not word.isalpha() or len(word) < 4:
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ing") and len(word) >= 6:
        word = _undouble(word[:-3])
    elif word.endswith("ed") and len(word) >= 5:
        word = _undouble(word[:-2])
    if word.endswith("e") and len(word) >= 4:
        word = word[:-1]
    return word


@functools.lru_cache(maxsize=131_072)
def _term(word: str) -> str | None:
    """The index term of one case-folded word, or None if it is not indexed."""
    if len(word) < 2 or word in STOPWORDS:
        return None
    return stem(word)


def tokenize(text: str) -> list[str]:
    """The index terms of ``text``, in order of appearance (duplicates kept)."""
    terms = map(_term, _WORD.findall(text.casefold()))
    return [t for t in terms if t is not None]
