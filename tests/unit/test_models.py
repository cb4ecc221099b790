"""Coordinates, ids, payload validation, importance_norm, filters."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from somafractalmemory.errors import InvalidInput, PayloadTooLarge
from somafractalmemory.models import (
    MAX_PAYLOAD_BYTES,
    MemoryType,
    canonical_coordinate,
    format_coordinate,
    importance_norm,
    indexed_text,
    matches_filters,
    memory_id,
    validate_payload,
)

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
coords = st.lists(st.one_of(finite, st.integers(-(10**6), 10**6)), min_size=1, max_size=16)


@given(coords)
def test_canonical_form_is_floats_and_idempotent(values: list[float]) -> None:
    c = canonical_coordinate(values)
    assert all(type(x) is float for x in c)
    assert canonical_coordinate(c) == c
    assert canonical_coordinate(format_coordinate(c)) == c
    assert canonical_coordinate(tuple(values)) == c


@given(coords)
def test_ints_and_floats_are_one_address(values: list[float]) -> None:
    as_float = [float(v) for v in values]
    assert memory_id("ns", canonical_coordinate(values)) == memory_id("ns", canonical_coordinate(as_float))


def test_negative_zero_is_zero() -> None:
    c = canonical_coordinate((-0.0, 1, 2))
    assert math.copysign(1.0, c[0]) == 1.0
    assert memory_id("a", c) == memory_id("a", canonical_coordinate((0, 1, 2)))


def test_ids_differ_by_namespace_and_coordinate() -> None:
    c = canonical_coordinate("1,2,3")
    assert memory_id("a", c) != memory_id("b", c)
    assert memory_id("a", c) != memory_id("a", canonical_coordinate("1,2,4"))


@pytest.mark.parametrize(
    "bad",
    [
        [],
        list(range(17)),
        [float("nan")],
        [float("inf"), 1],
        ["a", "b"],
        "a,b",
        "",
        "1,,2",
        [True, 1],
        {"x": 1},
        None,
    ],
)
def test_bad_coordinates_name_the_field(bad: object) -> None:
    with pytest.raises(InvalidInput) as err:
        canonical_coordinate(bad)
    assert err.value.field == "coordinate"


@pytest.mark.parametrize(
    "payload, field",
    [
        ([1, 2], "payload"),
        ("text", "payload"),
        ({"x": float("nan")}, "payload.x"),
        ({"importance": -1}, "payload.importance"),
        ({"importance": "high"}, "payload.importance"),
        ({"tags": "a"}, "payload.tags"),
        ({"timestamp": "yesterday"}, "payload.timestamp"),
        ({"a": {"b": object()}}, "payload.a.b"),
    ],
)
def test_bad_payloads_name_the_field(payload: object, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_payload(payload)
    assert err.value.field == field


def test_oversized_payload() -> None:
    with pytest.raises(PayloadTooLarge):
        validate_payload({"text": "x" * (MAX_PAYLOAD_BYTES + 1)})


@given(st.floats(min_value=0, max_value=1e12), st.floats(min_value=0, max_value=1e12))
def test_importance_norm_is_monotone_in_open_unit_interval(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert 0 < importance_norm(lo) <= importance_norm(hi) <= 1


def test_memory_type_parse() -> None:
    assert MemoryType.parse("Semantic") is MemoryType.SEMANTIC
    assert MemoryType.parse(None) is MemoryType.EPISODIC
    with pytest.raises(InvalidInput):
        MemoryType.parse("dream")


def test_indexed_text_rule() -> None:
    text = indexed_text(
        {"speaker": "Ada", "text": "hello", "fact": "x", "timestamp": 3, "tags": ["t1"], "n": 1}
    )
    assert text.split("\n") == ["hello", "x", "Ada", "t1"]


def test_filters() -> None:
    p = {"kind": "note", "tags": ["a", "b"], "score": 3, "meta": {"src": "web"}, "flag": True}
    assert matches_filters(p, {"kind": "note"})
    assert matches_filters(p, {"tags": "a"})
    assert matches_filters(p, {"kind": ["x", "note"]})
    assert matches_filters(p, {"score": {"gte": 3, "lt": 4}})
    assert not matches_filters(p, {"score": {"gt": 3}})
    assert matches_filters(p, {"meta.src": "web"})
    assert not matches_filters(p, {"missing": 1})
    assert not matches_filters(p, {"flag": 1})
    assert matches_filters(p, {"kind": {"ne": "x"}})
