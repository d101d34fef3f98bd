"""The one stdout sink: every command's result goes out through here.

A result is a line of text (a path, a summary of counts), JSON for ``--json``, or a rich table;
logs, progress bars and warnings go to stderr (:mod:`speechsum_cli.console`).
"""

from __future__ import annotations

import json
from typing import Any

import typer


def emit(text: str) -> None:
    """A command's result as text on stdout."""
    typer.echo(text)


def emit_json(payload: Any, *, indent: int | None = None) -> None:
    """A command's result as JSON on stdout (``--json``); paths and other values as strings."""
    typer.echo(json.dumps(payload, indent=indent, default=str))


def emit_rich(renderable: Any) -> None:
    """A rich renderable (eval's table) on stdout."""
    from rich.console import Console

    Console().print(renderable)


def echo_result(result: Any, as_json: bool) -> None:
    """A stage's result on stdout: its path, or with --json path, counts and metrics."""
    if as_json:
        emit_json({"out": str(result.out), "counts": result.counts, "metrics": result.metrics})
    else:
        emit(str(result.out))


def estimate_json(batch: Any, **extra: Any) -> None:
    """A dry run's estimate (requests, tokens, USD) of an LLM call batch as JSON (``--json``)."""
    emit_json(
        {
            "dry_run": True,
            "requests": batch.estimated_requests,
            "input_tokens": batch.estimated_input_tokens,
            "output_tokens": batch.estimated_output_tokens,
            "cost_usd": round(batch.estimated_cost_usd, 6),
            **extra,
        }
    )
