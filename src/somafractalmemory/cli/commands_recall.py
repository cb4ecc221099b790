"""``soma recall``: hybrid recall by meaning and keyword."""

from __future__ import annotations

import click

from . import render
from .context import State, load_json_arg, parse_filters, pass_state

__all__ = ["COMMANDS"]


@click.command()
@click.argument("query")
@click.option("--top-k", "-k", "top_k", type=int, default=5, show_default=True, help="how many hits.")
@click.option("--type", "memory_type", default=None, help="only this memory type (episodic or semantic).")
@click.option(
    "--filter",
    "filter_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="payload filter; repeatable; VALUE is JSON if it parses, else a string; dotted keys reach nested.",
)
@click.option(
    "--filters", "filters_json", default=None, metavar="JSON", help="filters as a JSON object (or @file)."
)
@click.option(
    "--context",
    "context_json",
    default=None,
    metavar="JSON",
    help='context as a JSON object, e.g. {"coordinate": [1,2,3]}.',
)
@click.option("--min-score", type=float, default=None, help="drop hits scoring below this (abstention).")
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
    if scores:
        found = state.memory.recall_with_scores(query, top_k, memory_type, filters, context, min_score)
        render.hits(state.json_output, found)
    else:
        payloads = state.memory.recall(query, top_k, memory_type, filters, context, min_score)
        render.payloads(state.json_output, payloads)


COMMANDS: list[click.Command] = [recall]
