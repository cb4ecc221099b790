"""Output of ``soma``: readable lines and tables, or one JSON document (``--json``).

Results go to stdout; messages, errors and progress bars go to stderr, so
``soma --json ... | jq`` always sees exactly one JSON document.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

from ..models import Coordinate, HistoryEntry, Link, Memory, RecallHit, indexed_text

__all__ = [
    "batches",
    "coord_text",
    "emit_json",
    "error",
    "health",
    "history",
    "hits",
    "links",
    "mapping",
    "memories",
    "memory",
    "path",
    "payloads",
    "progress",
    "readiness",
    "table",
    "wants_progress",
]

TEXT_WIDTH = 60


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def error(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def coord_text(coord: Sequence[float]) -> str:
    """``1,2,3.5``: the text form a user can paste back into a command."""
    parts = []
    for value in coord:
        text = repr(float(value))
        parts.append(text[:-2] if text.endswith(".0") else text)
    return ",".join(parts)


def _when(timestamp: Any) -> str:
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _short(text: str, width: int = TEXT_WIDTH) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table (nothing printed but ``(none)`` when empty)."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def memory(as_json: bool, mem: Memory, verb: str | None = None) -> None:
    """One memory: a one-line confirmation after a write, the full record otherwise."""
    if as_json:
        emit_json(mem.to_dict())
        return
    if verb:
        click.echo(
            f"{verb} {mem.memory_type.value} memory at {coord_text(mem.coordinate)} "
            f"(version {mem.version}, id {mem.id})"
        )
        return
    for key, value in (
        ("coordinate", coord_text(mem.coordinate)),
        ("id", mem.id),
        ("namespace", mem.namespace),
        ("type", mem.memory_type.value),
        ("version", mem.version),
        ("created", _when(mem.created_at)),
        ("updated", _when(mem.updated_at)),
        ("payload", json.dumps(mem.payload, ensure_ascii=False, indent=2)),
    ):
        click.echo(f"{key:<11}{value}")


def memories(as_json: bool, items: Sequence[Memory]) -> None:
    if as_json:
        emit_json([m.to_dict() for m in items])
        return
    table(
        ["coordinate", "type", "version", "text"],
        [(coord_text(m.coordinate), m.memory_type.value, m.version, _short(m.text)) for m in items],
    )


def payloads(as_json: bool, items: Sequence[Mapping[str, Any]]) -> None:
    """Recall results without scores (payloads with ``coordinate`` and ``memory_type``)."""
    if as_json:
        emit_json(list(items))
        return
    table(
        ["coordinate", "type", "text"],
        [
            (coord_text(p.get("coordinate") or []), p.get("memory_type", ""), _short(indexed_text(p)))
            for p in items
        ],
    )


def batches(as_json: bool, queries: Sequence[str], results: Sequence[Sequence[Mapping[str, Any]]]) -> None:
    """One recall per query: ``[{"query", "matches": [payload]}]``, or a titled table per query."""
    if as_json:
        emit_json([{"query": q, "matches": list(r)} for q, r in zip(queries, results, strict=True)])
        return
    for i, (query, found) in enumerate(zip(queries, results, strict=True)):
        if i:
            click.echo()
        click.echo(f"query: {query}")
        payloads(False, found)


def hits(as_json: bool, items: Sequence[RecallHit]) -> None:
    if as_json:
        emit_json([h.to_dict() for h in items])
        return
    table(
        ["score", "vector", "keyword", "importance", "recency", "coordinate", "type", "text"],
        [
            (
                f"{h.score:.4f}",
                f"{h.parts.vector:.3f}",
                f"{h.parts.keyword:.3f}",
                f"{h.parts.importance:.3f}",
                f"{h.parts.recency:.3f}",
                coord_text(h.memory.coordinate),
                h.memory.memory_type.value,
                _short(h.memory.text, 40),
            )
            for h in items
        ],
    )


def links(as_json: bool, items: Sequence[Link]) -> None:
    if as_json:
        emit_json([link.to_dict() for link in items])
        return
    table(
        ["from", "to", "type", "weight"],
        [(coord_text(x.from_coord), coord_text(x.to_coord), x.link_type, f"{x.weight:g}") for x in items],
    )


def path(as_json: bool, coords: Sequence[Coordinate]) -> None:
    if as_json:
        emit_json({"path": [list(c) for c in coords], "hops": max(len(coords) - 1, 0)})
        return
    hops = max(len(coords) - 1, 0)
    click.echo(" -> ".join(coord_text(c) for c in coords) + f"  ({hops} hop{'s' if hops != 1 else ''})")


def history(as_json: bool, entries: Sequence[HistoryEntry]) -> None:
    if as_json:
        emit_json([e.to_dict() for e in entries])
        return
    table(
        ["version", "action", "when", "actor", "type", "changed"],
        [
            (
                e.version,
                e.action,
                _when(e.changed_at),
                e.actor,
                e.memory_type.value if e.memory_type else "-",
                ",".join(e.changed_keys) or "-",
            )
            for e in entries
        ],
    )


def mapping(as_json: bool, data: Mapping[str, Any], title: str | None = None) -> None:
    """A flat result (stats, counts) as ``key: value`` lines."""
    if as_json:
        emit_json(dict(data))
        return
    if title:
        click.echo(title)
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        click.echo(f"{key:<{width}}  {value}")


def health(as_json: bool, report: Mapping[str, Mapping[str, Any]]) -> None:
    if as_json:
        emit_json({"ok": all(e.get("ok") for e in report.values()), "backends": dict(report)})
        return
    table(
        ["port", "backend", "status", "latency_ms", "detail"],
        [
            (
                port,
                e.get("backend", "-"),
                "ok" if e.get("ok") else "FAIL",
                e.get("latency_ms", "-"),
                e.get("error") or (f"pending {e['pending']}" if "pending" in e else ""),
            )
            for port, e in report.items()
        ],
    )


def readiness(as_json: bool, ready: bool, backends: Mapping[str, bool]) -> None:
    if as_json:
        emit_json({"ready": ready, "backends": dict(backends)})
        return
    click.echo("ready" if ready else "not ready")
    table(["port", "status"], [(port, "ok" if ok else "FAIL") for port, ok in backends.items()])


def wants_progress(no_progress: bool) -> bool:
    """Whether a progress bar would be shown (stderr is a TTY, not disabled)."""
    return not no_progress and sys.stderr.isatty()


@contextmanager
def progress(enabled: bool, length: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr, shown only when ``enabled`` and stderr is a TTY.

    Yields ``advance(n)``; the bar is completed when the block ends.
    """
    if not enabled or length <= 0 or not wants_progress(False):
        yield lambda n: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            step = max(0, min(n, length - done))
            done += step
            bar.update(step)

        yield advance
        advance(length - done)
