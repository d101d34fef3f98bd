"""One pool of async workers for many requests at once (synth's writer and TTS, the judges' batch).

``concurrency`` workers take jobs in order from one iterator and await ``handle(job)``; ``handle``
records its own result (everything runs on one event loop, so plain dicts and counters need no lock).

When a job raises, no further job is handed out; the jobs already in flight finish and keep their
results. An exception of a ``stop_on`` type (``BudgetExceeded``) is a clean stop and is returned;
any other exception is raised once the jobs in flight are done, even if a stop came first.
Cancellation (Ctrl-C under ``asyncio.run``) cancels every worker at once and propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

J = TypeVar("J")


async def run_pool(
    jobs: Iterable[J],
    handle: Callable[[J], Awaitable[None]],
    *,
    concurrency: int,
    stop_on: tuple[type[Exception], ...] = (),
) -> Exception | None:
    """Run ``handle`` on every job, at most ``concurrency`` at a time; return what stopped it early.

    Returns the first ``stop_on`` exception (jobs after it were never handed out), or None when every
    job was handled. Raises the first other exception a job (or ``jobs`` itself) raised.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    pending = iter(jobs)
    stops: list[Exception] = []
    errors: list[Exception] = []

    async def worker() -> None:
        while not (stops or errors):  # checked before every job, the first one included
            try:
                job = next(pending)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - a broken job source fails like a job (raised below)
                errors.append(exc)
                return
            try:
                await handle(job)
            except stop_on as exc:
                stops.append(exc)
            except Exception as exc:  # noqa: BLE001 - kept, raised once the jobs in flight finish
                errors.append(exc)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if errors:
        first = errors[0]
        if len(errors) > 1 and hasattr(first, "add_note"):  # Python 3.11+
            kinds = ", ".join(sorted({type(e).__name__ for e in errors[1:]}))
            first.add_note(f"{len(errors) - 1} more job(s) in flight also raised ({kinds})")
        raise first
    return stops[0] if stops else None


__all__ = ["run_pool"]
