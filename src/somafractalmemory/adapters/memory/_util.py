"""Helpers shared by the in-process adapters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ...errors import InvalidInput
from ...models import Link

T = TypeVar("T")


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars); much faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        for item in value.values():
            if isinstance(item, (dict, list)):
                return {key: copy_json(item) for key, item in value.items()}
        return value.copy()  # flat: the values are immutable
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


def clone_link(link: Link) -> Link:
    return Link(
        link.namespace,
        link.from_id,
        link.to_id,
        tuple(link.from_coord),
        tuple(link.to_coord),
        link.link_type,
        link.weight,
        copy_json(link.metadata),
        link.created_at,
    )


def check_box(lo: Sequence[float], hi: Sequence[float]) -> int:
    """The number of dimensions of a range query; ``lo`` and ``hi`` must agree."""
    if not lo:
        raise InvalidInput("lo", "must have at least one value")
    if len(lo) != len(hi):
        raise InvalidInput("hi", f"has {len(hi)} values but lo has {len(lo)}")
    return len(lo)


def top_n(
    slots: npt.NDArray[np.intp],
    keys: Sequence[npt.NDArray[np.float64]],
    ids: Sequence[str],
    n: int,
) -> list[int]:
    """The ``n`` slots that come first when ordered by ``keys`` descending
    (lexicographically), then by id ascending. Runs in O(len(slots)) except
    for the final sort of at most ``n`` slots (plus exact ties)."""
    if n <= 0 or len(slots) == 0:
        return []
    chosen: list[int] = []
    remaining = n
    for key in keys:
        if len(slots) <= remaining:
            break
        values = key[slots]
        threshold = np.partition(values, len(values) - remaining)[len(values) - remaining]
        above = slots[values > threshold]
        chosen.extend(int(s) for s in above)
        remaining -= len(above)
        slots = slots[values == threshold]
    tied = sorted((int(s) for s in slots), key=lambda s: ids[s])
    chosen.extend(tied[:remaining])
    chosen.sort(key=lambda s: (*(-float(k[s]) for k in keys), ids[s]))
    return chosen
