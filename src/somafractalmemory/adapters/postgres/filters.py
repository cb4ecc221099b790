"""Recall filters as JSONB SQL, with exactly the semantics of ``models.matches_filters``.

``compile_filters(filters)`` returns an SQL condition over a ``payload``
column and its parameters (all bound, never spliced). Python's equality on
JSON values is mirrored: numbers compare by value (``1 == 1.0``), ``true``
equals ``1`` and ``false`` equals ``0`` (except where ``matches_filters``
compares booleans by identity), a list field matches when one of its
elements equals the value. Dotted keys walk objects only (never into array
indices). String equalities also add a containment test (``@>``) that the
GIN index on ``payload`` can serve; the exact test still decides.

Known difference: booleans nested *inside* lists or objects compare as
JSONB does (``[true]`` differs from ``[1]``), where Python would call them
equal.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from ...errors import InvalidInput

__all__ = ["compile_filters"]

_NUMERIC_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _number(value: Any) -> Decimal:
    """The decimal a JSON number is stored as (floats by their shortest repr)."""
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, int):
        return Decimal(value)
    return Decimal(repr(float(value)))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Builder:
    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self._names = itertools.count()

    def bind(self, value: Any, cast: str) -> sql.Composable:
        name = f"f{next(self._names)}"
        self.params[name] = value
        return sql.SQL("{}::" + cast).format(sql.Placeholder(name))

    # -- equality under Python semantics --------------------------------
    def pyeq(self, v: sql.Composable, x: Any, bool_cross: bool = True) -> sql.Composable:
        """``v == x`` as Python compares the decoded JSON values."""
        if x is None:
            return sql.SQL("({} = 'null'::jsonb)").format(v)
        if isinstance(x, bool):
            same = sql.SQL("{} = {}").format(v, self.bind(Jsonb(x), "jsonb"))
            if not bool_cross:
                return sql.SQL("({})").format(same)
            num = self.bind(_number(x), "numeric")
            return sql.SQL(
                "({} OR CASE WHEN jsonb_typeof({}) = 'number' THEN ({})::numeric = {} ELSE false END)"
            ).format(same, v, v, num)
        if _is_number(x):
            num = self.bind(_number(x), "numeric")
            test = sql.SQL(
                "CASE WHEN jsonb_typeof({}) = 'number' THEN ({})::numeric = {} ELSE false END"
            ).format(v, v, num)
            if bool_cross and x in (0, 1):
                flag = self.bind(Jsonb(bool(x)), "jsonb")
                return sql.SQL("({} OR {} = {})").format(test, v, flag)
            return sql.SQL("({})").format(test)
        return sql.SQL("({} = {})").format(v, self.bind(Jsonb(x), "jsonb"))

    def any_element(self, v: sql.Composable, x: Any) -> sql.Composable:
        """``x in v`` for an array ``v``."""
        inner = self.pyeq(sql.SQL("e.el"), x)
        return sql.SQL("EXISTS (SELECT 1 FROM jsonb_array_elements({}) AS e(el) WHERE {})").format(v, inner)

    # -- one filter value (``_match_one``) -------------------------------
    def match(self, v: sql.Composable, expected: Any) -> sql.Composable:
        is_array = sql.SQL("jsonb_typeof({}) = 'array'").format(v)
        if isinstance(expected, Mapping):
            parts: list[sql.Composable] = []
            for op, bound in expected.items():
                if op == "in":
                    if isinstance(bound, (int, float, bool)) or bound is None:
                        raise InvalidInput("filters", f"'in' needs a list, got {bound!r}")
                    parts.append(self.match(v, list(bound)))
                elif op == "ne":
                    parts.append(sql.SQL("NOT {}").format(self.pyeq(v, bound)))
                elif op in _NUMERIC_OPS:
                    if not isinstance(bound, (int, float)):
                        raise InvalidInput("filters", f"{op!r} needs a number, got {bound!r}")
                    parts.append(
                        sql.SQL(
                            "CASE WHEN jsonb_typeof({}) = 'number' THEN ({})::numeric "
                            + _NUMERIC_OPS[op]
                            + " {} ELSE false END"
                        ).format(v, v, self.bind(_number(bound), "numeric"))
                    )
                else:
                    parts.append(sql.SQL("false"))
            return sql.SQL("({})").format(sql.SQL(" AND ").join(parts)) if parts else sql.SQL("true")
        if isinstance(expected, list):
            if not expected:
                return sql.SQL("false")
            in_array = sql.SQL(" OR ").join(self.any_element(v, item) for item in expected)
            scalar = sql.SQL(" OR ").join(self.pyeq(v, item) for item in expected)
            return sql.SQL("(CASE WHEN {} THEN ({}) ELSE ({}) END)").format(is_array, in_array, scalar)
        # a list field contains it; booleans compare by identity; else equality
        other = self.pyeq(v, expected, bool_cross=False)
        if not isinstance(expected, bool):
            other = sql.SQL("(jsonb_typeof({}) <> 'boolean' AND {})").format(v, other)
        return sql.SQL("(CASE WHEN {} THEN {} ELSE {} END)").format(
            is_array, self.any_element(v, expected), other
        )

    def contains_hint(self, parts: list[str], expected: Any) -> sql.Composable | None:
        """A GIN-servable necessary condition for string (any-of) equality."""
        values = expected if isinstance(expected, list) else [expected]
        if not values or not all(isinstance(x, str) for x in values):
            return None
        docs: list[sql.Composable] = []
        for x in values:
            for leaf in (x, [x]):
                doc: Any = leaf
                for part in reversed(parts):
                    doc = {part: doc}
                docs.append(sql.SQL("payload @> {}").format(self.bind(Jsonb(doc), "jsonb")))
        return sql.SQL("({})").format(sql.SQL(" OR ").join(docs))


def compile_filters(filters: Mapping[str, Any] | None) -> tuple[sql.Composable, dict[str, Any]]:
    """``(condition, params)``: the SQL twin of ``matches_filters(payload, filters)``."""
    b = _Builder()
    if not filters:
        return sql.SQL("true"), b.params
    conditions: list[sql.Composable] = []
    for key, expected in filters.items():
        parts = key.split(".")
        v = sql.SQL("(payload #> {})").format(b.bind(parts, "text[]"))
        conditions.append(sql.SQL("{} IS NOT NULL").format(v))
        for depth in range(1, len(parts)):
            prefix = b.bind(parts[:depth], "text[]")
            conditions.append(sql.SQL("jsonb_typeof(payload #> {}) = 'object'").format(prefix))
        hint = b.contains_hint(parts, expected)
        if hint is not None:
            conditions.append(hint)
        conditions.append(b.match(v, expected))
    return sql.SQL(" AND ").join(conditions), b.params
