"""The one output sink for logs, warnings and progress bars: rich on stderr.

Results (summaries, JSON) go to stdout through ``typer.echo`` in the CLI layer only.
"""

from __future__ import annotations

from rich.console import Console

err_console = Console(stderr=True, highlight=False)


def warn(message: str) -> None:
    """Print a yellow warning line on stderr."""
    err_console.print(f"[yellow]Warning:[/yellow] {message}", soft_wrap=True)


def info(message: str) -> None:
    """Print a dim progress/log line on stderr."""
    err_console.print(f"[dim]{message}[/dim]", soft_wrap=True)
