"""Invariants of the hybrid score (docs/FAST_CORE_MATH.md, "Hybrid recall")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from somafractalmemory.errors import InvalidInput
from somafractalmemory.models import ScoreParts
from somafractalmemory.services.scoring import DEFAULT_WEIGHTS, Weights, combine, recency

unit = st.floats(min_value=0, max_value=1)
imp = st.floats(min_value=0.5, max_value=1)


@given(unit, unit, imp, unit, unit, st.booleans())
def test_score_in_unit_interval(v: float, k: float, i: float, r: float, g: float, use_graph: bool) -> None:
    s = combine(ScoreParts(v, k, i, r, g), DEFAULT_WEIGHTS, use_graph)
    assert 0.0 <= s <= 1.0


@given(unit, imp)
def test_reduces_to_base_score(cos: float, importance: float) -> None:
    w = DEFAULT_WEIGHTS.merged({"keyword": 0, "recency": 0, "importance": 1})
    assert combine(ScoreParts(cos, 0.7, importance, 0.1, 0.0), w, False) == pytest.approx(cos * importance)


@given(unit, unit, imp, unit, unit, unit)
def test_monotone_in_each_part(v: float, k: float, i: float, r: float, g: float, bump: float) -> None:
    base = ScoreParts(v, k, i, r, g)
    before = combine(base, DEFAULT_WEIGHTS, True)
    for name in ("vector", "keyword", "recency", "graph"):
        parts = ScoreParts(**{**base.to_dict(), name: min(1.0, getattr(base, name) + bump)})
        assert combine(parts, DEFAULT_WEIGHTS, True) >= before - 1e-12
    higher = ScoreParts(**{**base.to_dict(), "importance": min(1.0, i + bump)})
    assert combine(higher, DEFAULT_WEIGHTS, True) >= before - 1e-12


def test_recency_half_life() -> None:
    assert recency(0, 10) == 1.0
    assert recency(10, 10) == pytest.approx(0.5)
    assert recency(20, 10) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"nope": 1}, "weights.nope"),
        ({"vector": -1}, "weights.vector"),
        ({"vector": 0, "keyword": 0}, "weights"),
        ({"graph": 2}, "weights"),
        ({"keyword": float("nan")}, "weights.keyword"),
    ],
)
def test_bad_weights_name_the_field(overrides: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        Weights().merged(overrides)
    assert err.value.field == field
