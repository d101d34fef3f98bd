"""The one output sink for logs, warnings and progress bars: rich on stderr.

Results (summaries, JSON) go to stdout through ``typer.echo`` in the CLI layer only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err_console = Console(stderr=True, highlight=False)


def plural(n: int, noun: str, many: str | None = None) -> str:
    """'1 row', '2 rows' (``many`` for irregular plurals: plural(n, 'reply', 'replies'))."""
    return f"{n} {noun}" if n == 1 else f"{n} {many or noun + 's'}"


def warn(message: str) -> None:
    """Print a yellow warning line on stderr."""
    err_console.print(f"[yellow]Warning:[/yellow] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    """Print a dim progress/log line on stderr."""
    err_console.print(f"[dim]{escape(message)}[/dim]", soft_wrap=True)


def error(message: str) -> None:
    """Print the red ``Error:`` line for a user-fixable problem on stderr."""
    err_console.print(f"[bold red]Error:[/bold red] {escape(message)}", soft_wrap=True)


@contextmanager
def progress_bar(
    description: str,
    total: int,
    *,
    enabled: bool = True,
    completed: int = 0,
    stats: Callable[[], str] | None = None,
) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(n)``. Disabled -> a no-op advance.

    ``completed`` items are done already (a resumed run); ``stats()`` is shown after the count and
    asked again on every advance (e.g. '3.1 rows/s 1,200 tok $0.0042').
    """
    if not enabled:
        yield lambda n=1: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if stats is not None:
        columns.append(TextColumn("{task.fields[stats]}"))
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(
            description, total=total, completed=completed, stats=stats() if stats is not None else ""
        )

        def advance(n: int = 1) -> None:
            if stats is None:
                progress.advance(task, n)
            else:
                progress.update(task, advance=n, stats=stats())
            if progress.tasks[0].completed > (progress.tasks[0].total or 0):
                progress.update(task, total=progress.tasks[0].completed)

        yield advance
