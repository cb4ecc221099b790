"""Recall filters pushed down to SQL (``json_extract`` / ``json_each``).

:func:`pushdown` turns ``models.matches_filters`` filters into SQL
conditions that every matching payload satisfies: a *superset* that narrows
the rows the database returns. The adapter then checks the few candidate
payloads with ``matches_filters`` itself, so the semantics (list contains,
any-of, booleans that never equal numbers, dotted keys) stay defined in one
place. A filter that cannot be expressed is reduced to "the key exists".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["json_path", "pushdown"]

_INT64 = (-(2**63), 2**63 - 1)
_COMPARE = ("gt", "gte", "lt", "lte")


def json_path(key: str) -> str | None:
    """The SQLite JSON path of a dotted filter key (``a.b`` -> ``$."a"."b"``),
    or None when a part cannot be quoted safely."""
    parts = key.split(".")
    if any(not p or '"' in p or "\\" in p for p in parts):
        return None
    return "$" + "".join(f'."{p}"' for p in parts)


def _exact(value: Any) -> bool:
    """Whether SQLite tests equality with ``value`` exactly as Python does:
    strings, 64-bit integers and integral floats (no bools, whose JSON reading
    differs, nor fractions, whose decimal parsing may differ in the last bit)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    if isinstance(value, float):
        return value.is_integer() and abs(value) < 2**53
    return isinstance(value, str)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _widened(op: str, bound: float) -> tuple[str, float]:
    """A slightly looser inclusive bound, so that no rounding of the stored
    number by SQLite can exclude a match (the exact check follows)."""
    slack = abs(float(bound)) * 1e-12 + 1e-300
    if op in ("gt", "gte"):
        return ">=", float(bound) - slack
    return "<=", float(bound) + slack


def _any_of(path: str, values: list[Any], params: list[Any]) -> str:
    if not values:
        return "0"  # matches_filters: an empty any-of list matches nothing
    if not all(_exact(v) for v in values):
        params.append(path)
        return "json_type(payload, ?) IS NOT NULL"
    params.append(path)
    params.extend(values)
    marks = ",".join("?" * len(values))
    # json_each yields a scalar itself, or each element of an array.
    return f"EXISTS (SELECT 1 FROM json_each(payload, ?) WHERE value IN ({marks}))"


def _condition(path: str, expected: Any, params: list[Any]) -> str:
    if isinstance(expected, Mapping):
        parts: list[str] = []
        for op, bound in expected.items():
            if op in _COMPARE and _number(bound):
                sql_op, loose = _widened(op, bound)
                params.extend((path, path, loose))
                parts.append(
                    f"(json_type(payload, ?) IN ('integer', 'real') AND json_extract(payload, ?) {sql_op} ?)"
                )
            elif op == "in" and isinstance(bound, list):
                parts.append(_any_of(path, bound, params))
            elif op not in _COMPARE and op not in ("in", "ne"):
                return "0"  # an unknown operator never matches
        if not parts:
            params.append(path)
            return "json_type(payload, ?) IS NOT NULL"
        return " AND ".join(parts)
    if isinstance(expected, list):
        return _any_of(path, expected, params)
    if isinstance(expected, bool) or expected is None:
        kind = "null" if expected is None else ("true" if expected else "false")
        params.append(path)
        return f"json_type(payload, ?) IN ('{kind}', 'array')"
    if _exact(expected):
        return _any_of(path, [expected], params)
    params.append(path)
    return "json_type(payload, ?) IS NOT NULL"


def pushdown(filters: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
    """``(sql, params)``: conditions ANDed together (``"1"`` when there are none)."""
    clauses: list[str] = []
    params: list[Any] = []
    for key, expected in (filters or {}).items():
        path = json_path(key)
        if path is not None:
            clauses.append(f"({_condition(path, expected, params)})")
    return (" AND ".join(clauses) or "1"), params
