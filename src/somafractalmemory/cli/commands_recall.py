"""``soma recall`` and ``soma recall-batch``: hybrid recall by meaning and keyword."""

from __future__ import annotations

import re
from typing import Any

import click

from ..errors import InvalidInput
from . import render
from .context import State, load_json_arg, parse_filters, pass_state, read_text, remote

__all__ = ["COMMANDS"]

#: Most queries per core call (the library's and the API's bound).
BATCH_QUERIES = 256
_QUERY_FIELD = re.compile(r"^queries\[(\d+)\]")

top_k_option = click.option(
    "--top-k", "-k", "top_k", type=int, default=5, show_default=True, help="how many hits (per query)."
)
type_option = click.option(
    "--type", "memory_type", default=None, help="only this memory type (episodic or semantic)."
)
filter_option = click.option(
    "--filter",
    "filter_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="payload filter; repeatable; VALUE is JSON if it parses, else a string; dotted keys reach nested.",
)
filters_option = click.option(
    "--filters", "filters_json", default=None, metavar="JSON", help="filters as a JSON object (or @file)."
)
min_score_option = click.option(
    "--min-score", type=float, default=None, help="drop hits scoring below this (abstention)."
)


def _shift(field: str, offset: int) -> str:
    """``queries[3]`` of a batch starting at ``offset`` -> its index in the whole list."""
    return _QUERY_FIELD.sub(lambda m: f"queries[{int(m.group(1)) + offset}]", field)


@remote
@click.command()
@click.argument("query")
@top_k_option
@type_option
@filter_option
@filters_option
@click.option(
    "--context",
    "context_json",
    default=None,
    metavar="JSON",
    help='context as a JSON object, e.g. {"coordinate": [1,2,3]}.',
)
@min_score_option
@click.option("--scores", is_flag=True, help="show the score of each hit and its parts.")
@pass_state
def recall(
    state: State,
    query: str,
    top_k: int,
    memory_type: str | None,
    filter_pairs: tuple[str, ...],
    filters_json: str | None,
    context_json: str | None,
    min_score: float | None,
    scores: bool,
) -> None:
    """Recall the memories that best match QUERY, best first."""
    filters = parse_filters(filter_pairs, filters_json)
    context = load_json_arg(context_json, "context") if context_json else None
    if scores and context is not None:
        hits = state.memory.recall_with_context(query, context, top_k, memory_type, filters, min_score)
        render.hits(state.json_output, hits)
    elif scores:
        hits = state.memory.recall_with_scores(query, top_k, memory_type, filters, None, min_score)
        render.hits(state.json_output, hits)
    else:
        payloads = state.memory.recall(query, top_k, memory_type, filters, context, min_score)
        render.payloads(state.json_output, payloads)


@remote
@click.command("recall-batch")
@click.argument("queries", nargs=-1)
@click.option(
    "--file",
    "queries_file",
    default=None,
    metavar="PATH",
    help="also read queries from PATH, one per line (- = stdin; blank lines skipped).",
)
@top_k_option
@type_option
@filter_option
@filters_option
@min_score_option
@pass_state
def recall_batch(
    state: State,
    queries: tuple[str, ...],
    queries_file: str | None,
    top_k: int,
    memory_type: str | None,
    filter_pairs: tuple[str, ...],
    filters_json: str | None,
    min_score: float | None,
) -> None:
    """Recall for every query of QUERIES (and --file) at once, each as `soma recall` would."""
    asked = list(queries)
    if queries_file is not None:
        asked += [line.strip() for line in read_text(queries_file, "file").splitlines() if line.strip()]
    if not asked:
        raise InvalidInput("queries", "give at least one query, as arguments or with --file")
    filters = parse_filters(filter_pairs, filters_json)
    batches: list[list[dict[str, Any]]] = []
    for start in range(0, len(asked), BATCH_QUERIES):
        chunk = asked[start : start + BATCH_QUERIES]
        try:
            batches += state.memory.recall_batch(chunk, top_k, memory_type, filters, min_score)
        except InvalidInput as exc:  # name the query by its place in the whole list
            raise InvalidInput(_shift(exc.field, start), exc.message) from None
    render.batches(state.json_output, asked, batches)


COMMANDS: list[click.Command] = [recall, recall_batch]
