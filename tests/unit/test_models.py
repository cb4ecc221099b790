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


def test_ids_are_rfc4122_uuids() -> None:
    """``memory_id`` is the UUIDv5 of ``namespace \\x1f coordinate`` in the
    project's UUID namespace (as ``uuid.uuid5`` computes it); event ids are
    random UUIDv4s."""
    import uuid

    from somafractalmemory.models import _ID_NAMESPACE, format_coordinate, new_event_id

    for ns, coord in [("a", (1.0, 2.0, 3.0)), ("ns ü", (0.5,)), ("x", tuple(float(i) for i in range(16)))]:
        expected = uuid.uuid5(_ID_NAMESPACE, f"{ns}\x1f{format_coordinate(coord)}")
        assert memory_id(ns, coord) == str(expected)
    ids = {new_event_id() for _ in range(200)}
    assert len(ids) == 200
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.sampled_from(["a\x00"])
)
payloads = st.dictionaries(
    st.one_of(st.text(max_size=8), st.integers(0, 3)),
    st.one_of(
        scalars, st.lists(scalars, max_size=4), st.dictionaries(st.text(max_size=3), scalars, max_size=2)
    ),
    max_size=6,
)


@given(payloads)
def test_fast_and_full_payload_checks_agree(payload: dict[object, object]) -> None:
    """Flat payloads take a fast path; whatever the path, a payload is
    accepted exactly when the full recursive check accepts it, and the result
    equals its JSON round trip."""
    import json

    from somafractalmemory.models import _check_json, _metadata_problem

    try:
        _check_json(payload, "payload", 0)
        expected = json.loads(json.dumps(payload))
        ok = _metadata_problem(expected) is None
    except (InvalidInput, ValueError):
        ok = False
    if ok:
        clean = validate_payload(payload)
        assert json.dumps(clean) == json.dumps(expected)
        assert clean is not payload
    else:
        with pytest.raises(InvalidInput):
            validate_payload(payload)
