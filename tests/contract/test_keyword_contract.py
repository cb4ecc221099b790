"""Contract of ``IKeywordIndex``, and the shared tokenizer every index uses."""

from __future__ import annotations

from somafractalmemory.interfaces.storage import IKeywordIndex
from somafractalmemory.text import tokenize

DOCS = [
    ("d1", "The cat sat on the mat"),
    ("d2", "Quarterly revenue report for the finance team"),
    ("d3", "Dogs and cats living together"),
    ("d4", "Revenue grew; revenue targets met; revenue up"),
    ("d5", "Notes about the weekly planning meeting"),
]


def ids(hits: list[tuple[str, float]]) -> list[str]:
    return [doc_id for doc_id, _ in hits]


def test_tokenizer_folds_case_drops_stopwords_and_stems() -> None:
    assert tokenize("The Cats are RUNNING to the stores") == ["cat", "run", "stor"]
    assert tokenize("documents documenting documented") == ["document"] * 3
    assert tokenize("a I x 42 foo_bar Straße") == ["42", "foo_bar", "strass"]
    assert tokenize("status analysis glass") == ["status", "analysis", "glass"]
    assert tokenize("") == [] and tokenize("the of and") == []


def test_adapter_implements_the_port(keyword_index: IKeywordIndex) -> None:
    assert isinstance(keyword_index, IKeywordIndex)
    assert keyword_index.name
    keyword_index.health()


def test_relevant_document_ranks_first_with_positive_scores(
    keyword_index: IKeywordIndex, namespace: str
) -> None:
    keyword_index.index(namespace, DOCS)
    hits = keyword_index.search(namespace, "revenue", 10)
    assert ids(hits) == ["d4", "d2"]  # more occurrences in a similar length win
    assert all(score > 0 for _, score in hits)
    assert hits[0][1] > hits[1][1]


def test_search_uses_the_shared_tokenizer(keyword_index: IKeywordIndex, namespace: str) -> None:
    keyword_index.index(namespace, DOCS)
    assert ids(keyword_index.search(namespace, "CAT", 10)) == ["d1", "d3"]  # the shorter document first
    assert set(ids(keyword_index.search(namespace, "planned meetings", 10))) == {"d5"}
    assert keyword_index.search(namespace, "the and of", 10) == []
    assert keyword_index.search(namespace, "", 10) == []
    assert keyword_index.search(namespace, "zebra", 10) == []


def test_any_query_term_matches_and_more_terms_rank_higher(
    keyword_index: IKeywordIndex, namespace: str
) -> None:
    keyword_index.index(namespace, DOCS)
    hits = keyword_index.search(namespace, "finance revenue meeting", 10)
    assert ids(hits)[0] == "d2"  # the only document with two of the terms
    assert set(ids(hits)) == {"d2", "d4", "d5"}


def test_limit_is_honoured(keyword_index: IKeywordIndex, namespace: str) -> None:
    keyword_index.index(namespace, [(f"doc{i}", f"alpha {'beta ' * (i % 5)}") for i in range(30)])
    assert len(keyword_index.search(namespace, "alpha", 7)) == 7
    assert len(keyword_index.search(namespace, "alpha", 100)) == 30
    assert keyword_index.search(namespace, "alpha", 0) == []


def test_index_again_replaces_the_text(keyword_index: IKeywordIndex, namespace: str) -> None:
    keyword_index.index(namespace, DOCS)
    keyword_index.index(namespace, [("d1", "completely different words about zebras")])
    assert "d1" not in ids(keyword_index.search(namespace, "mat", 10))
    assert ids(keyword_index.search(namespace, "zebra", 10)) == ["d1"]
    assert keyword_index.count(namespace) == len(DOCS)


def test_last_text_of_an_id_in_one_batch_wins(keyword_index: IKeywordIndex, namespace: str) -> None:
    keyword_index.index(namespace, [("x", "first apple"), ("x", "second banana")])
    assert keyword_index.search(namespace, "apple", 5) == []
    assert ids(keyword_index.search(namespace, "banana", 5)) == ["x"]
    assert keyword_index.count(namespace) == 1


def test_remove(keyword_index: IKeywordIndex, namespace: str) -> None:
    keyword_index.index(namespace, DOCS)
    keyword_index.remove(namespace, ["d4", "unknown"])
    assert ids(keyword_index.search(namespace, "revenue", 10)) == ["d2"]
    assert keyword_index.count(namespace) == len(DOCS) - 1
    keyword_index.remove(namespace + "_none", ["d1"])
    keyword_index.index(namespace, [("d4", "revenue is back")])
    assert set(ids(keyword_index.search(namespace, "revenue", 10))) == {"d2", "d4"}


def test_namespaces_are_isolated(keyword_index: IKeywordIndex, namespace: str) -> None:
    other = namespace + "_other"
    keyword_index.index(namespace, DOCS)
    keyword_index.index(other, [("d1", "revenue in another namespace")])
    assert set(ids(keyword_index.search(namespace, "revenue", 10))) == {"d2", "d4"}
    assert ids(keyword_index.search(other, "revenue", 10)) == ["d1"]
    assert keyword_index.search(other, "mat", 10) == []
    keyword_index.remove(other, ["d1", "d2"])
    assert keyword_index.count(other) == 0
    assert keyword_index.count(namespace) == len(DOCS)
    assert keyword_index.search(namespace + "_none", "revenue", 10) == []


def test_many_updates_keep_results_exact(keyword_index: IKeywordIndex, namespace: str) -> None:
    for round_ in range(4):
        keyword_index.index(namespace, [(f"d{i}", f"common word{round_} item{i}") for i in range(600)])
    keyword_index.remove(namespace, [f"d{i}" for i in range(0, 600, 2)])
    assert keyword_index.count(namespace) == 300
    assert keyword_index.search(namespace, "word0 word1 word2", 10) == []
    hits = keyword_index.search(namespace, "word3", 1000)
    assert sorted(ids(hits)) == sorted(f"d{i}" for i in range(1, 600, 2))
    assert ids(keyword_index.search(namespace, "item7", 5)) == ["d7"]
    assert keyword_index.search(namespace, "item8", 5) == []


def test_close_may_be_called_twice(keyword_index: IKeywordIndex) -> None:
    keyword_index.close()
    keyword_index.close()
