"""Recall filters (``models.matches_filters``) translated into Qdrant filters.

Qdrant's matching differs from the reference semantics in a few places:
exact matches are typed (``1`` does not match ``1.0`` nor ``true``), a range
also matches a number inside an array, and ``must_not`` on a value also drops
arrays that contain it. So every filter key becomes a condition that is a
*superset* of the reference one (never a subset), and the plan says whether
the pushed-down filter is also *exact*:

=====================================  ==========================  =======
filter                                 pushed down as              exact
=====================================  ==========================  =======
``memory_type``                        ``MatchValue``              yes
``{"k": "text"}`` (equality/contains)  ``MatchValue``              yes
``{"k": ["a", "b"]}`` / ``{"in": ..}``  ``MatchAny`` (strings)      yes
numbers, booleans in either of those   ``Range(v, v)`` / bool       no
``{"gt", "gte", "lt", "lte"}``         ``Range``                   no
``{"ne": x}``, ``None``, objects        nothing (post-filter only)  no
keys with a dot or unusual characters  as above on the nested key  no
=====================================  ==========================  =======

When the plan is not exact, the store checks every candidate with
``matches_filters`` and fetches more until it has ``k`` matches or the
collection is exhausted, so results are exact either way; an exact plan only
saves that check (and the payload transfer). Local mode does not push
filters by default (it evaluates them slowly); see ``store``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qdrant_client import models as qm

from ...models import MemoryType

__all__ = ["PAYLOAD_KEY", "TYPE_KEY", "FilterPlan", "plan_filter"]

#: Where the memory's own payload lives inside a point's payload.
PAYLOAD_KEY = "payload"
#: The memory type of a point (keyword, indexed).
TYPE_KEY = "memory_type"
#: Key segments that mean the same thing to Qdrant's path syntax and to a dict lookup.
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
#: Numbers beyond this lose precision as f64; comparisons with them stay client side.
_EXACT_FLOAT_LIMIT = 2.0**53
_RANGE_OPS = ("gt", "gte", "lt", "lte")


@dataclass(frozen=True, slots=True)
class FilterPlan:
    """What to send to Qdrant for one search.

    ``filter`` admits every matching point (maybe more); ``exact`` is True
    when it admits nothing else; ``empty`` is True when no point can match.
    """

    filter: qm.Filter | None
    exact: bool
    empty: bool = False


@dataclass(slots=True)
class _Part:
    condition: qm.Condition | None
    exact: bool
    empty: bool = False


def plan_filter(memory_type: MemoryType | None, filters: Mapping[str, Any] | None) -> FilterPlan:
    must: list[qm.Condition] = []
    exact = True
    if memory_type is not None:
        must.append(qm.FieldCondition(key=TYPE_KEY, match=qm.MatchValue(value=memory_type.value)))
    for key, expected in (filters or {}).items():
        part = _translate(key, expected)
        if part.empty:
            return FilterPlan(None, True, empty=True)
        exact = exact and part.exact
        if part.condition is not None:
            must.append(part.condition)
    return FilterPlan(qm.Filter(must=must) if must else None, exact)


def _translate(key: str, expected: Any) -> _Part:
    segments = key.split(".")
    if not all(_PLAIN_SEGMENT.fullmatch(s) for s in segments):
        return _Part(None, False)
    path = f"{PAYLOAD_KEY}.{key}"
    # A server may reach through arrays on a dotted path; the reference never does.
    single = len(segments) == 1
    if isinstance(expected, Mapping):
        part = _operators(path, expected)
    elif isinstance(expected, list):
        part = _any_of(path, expected)
    else:
        part = _equals(path, expected)
    part.exact = part.exact and single
    return part


def _operators(path: str, ops: Mapping[str, Any]) -> _Part:
    conditions: list[qm.Condition] = []
    exact = True
    bounds: dict[str, float] = {}
    for op, bound in ops.items():
        if op in _RANGE_OPS:
            exact = False  # a range also matches numbers inside arrays
            number = _number(bound)
            if number is not None:
                bounds[op] = number
        elif op == "in" and isinstance(bound, (list, tuple)):
            part = _any_of(path, list(bound))
            if part.empty:
                return part
            exact = exact and part.exact
            if part.condition is not None:
                conditions.append(part.condition)
        else:  # "ne" (must_not would also drop arrays holding the value), unknown operators
            exact = False
    if bounds:
        conditions.append(qm.FieldCondition(key=path, range=qm.Range(**bounds)))
    if not conditions:
        return _Part(None, False)
    if len(conditions) == 1:
        return _Part(conditions[0], exact)
    return _Part(qm.Filter(must=conditions), exact)


def _equals(path: str, value: Any) -> _Part:
    if isinstance(value, str):
        return _Part(qm.FieldCondition(key=path, match=qm.MatchValue(value=value)), True)
    options = _loose_number(path, value)
    if options is None:
        return _Part(None, False)
    return _Part(_either(options), False)


def _any_of(path: str, values: list[Any]) -> _Part:
    if not values:
        return _Part(None, True, empty=True)
    texts = [v for v in values if isinstance(v, str)]
    options: list[qm.Condition] = []
    if texts:
        match = qm.MatchValue(value=texts[0]) if len(texts) == 1 else qm.MatchAny(any=texts)
        options.append(qm.FieldCondition(key=path, match=match))
    for value in values:
        if isinstance(value, str):
            continue
        loose = _loose_number(path, value)
        if loose is None:  # None, objects, arrays: no superset to offer
            return _Part(None, False)
        options.extend(loose)
    return _Part(_either(options), len(texts) == len(values))


def _loose_number(path: str, value: Any) -> list[qm.Condition] | None:
    """Conditions matching every value the reference treats as equal to a
    number or boolean ``value`` (``1 == 1.0 == True`` inside arrays)."""
    number = _number(value)
    if number is None:
        return None
    options: list[qm.Condition] = [qm.FieldCondition(key=path, range=qm.Range(gte=number, lte=number))]
    if number in (0.0, 1.0):
        options.append(qm.FieldCondition(key=path, match=qm.MatchValue(value=bool(number))))
    return options


def _number(value: Any) -> float | None:
    if not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if abs(number) < _EXACT_FLOAT_LIMIT else None


def _either(options: list[qm.Condition]) -> qm.Condition:
    return options[0] if len(options) == 1 else qm.Filter(should=options)
