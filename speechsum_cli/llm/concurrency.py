"""Adaptive concurrency (AIMD): how many HTTP requests the one LLM client keeps in flight.

Every HTTP attempt of :class:`~speechsum_cli.llm.client.LLMClient` (each retry included) holds one
slot of its endpoint's :class:`AdaptiveLimit` while it waits for the reply, and says how it ended:

* overloaded — a time-out or HTTP 429: the limit halves (multiplicative decrease, never below 1),
  once per congestion event: an attempt that started before the last decrease does not decrease
  it again, so eight requests timing out together halve the limit once, not eight times;
* answered: the limit grows by 1/limit (additive increase: one more slot per limit's worth of
  answers, TCP's congestion avoidance), up to the ceiling, ``--concurrency``;
* anything else (HTTP 5xx, a connection error, a refusal): no change.

The limit starts at the ceiling, so a server that keeps up (vLLM at 64) never sees a decrease,
while a serial one (``transformers serve``) is brought down to what it answers within the
time-out instead of being flooded. The worker pool (:func:`~speechsum_cli.llm.pool.run_pool`)
still runs ``--concurrency`` jobs; a job past the limit waits here, before sending, in arrival order.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Outcome(str, Enum):
    """How one HTTP attempt ended, as far as the limit cares."""

    answered = "answered"
    timed_out = "timed_out"
    rate_limited = "rate_limited"
    other = "other"


OVERLOADED = (Outcome.timed_out, Outcome.rate_limited)


@dataclass
class Slot:
    """One attempt's place in flight; the client marks its outcome before the slot is released."""

    epoch: int
    """The limit's decrease count when the slot was granted."""
    outcome: Outcome = Outcome.other


class AdaptiveLimit:
    """At most ``allowed`` attempts in flight; AIMD on their outcomes (``adaptive=False``: fixed)."""

    def __init__(self, ceiling: int, *, adaptive: bool = True) -> None:
        if ceiling < 1:
            raise ValueError(f"concurrency must be at least 1, got {ceiling}")
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.limit = float(ceiling)
        self.lowest = float(ceiling)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.decreases = 0
        self.counts: collections.Counter[Outcome] = collections.Counter()
        self._waiters: collections.deque[asyncio.Future[int]] = collections.deque()

    @property
    def allowed(self) -> int:
        """Attempts that may be in flight now."""
        return max(1, int(self.limit))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Wait for a free slot, hold it for one attempt, then release it with its outcome."""
        slot = Slot(await self._acquire())
        try:
            yield slot
        finally:
            self._release(slot)

    def record(self) -> dict[str, Any]:
        """For ``speechsum.json``: the ceiling, where the limit ended and how low it went, and why."""
        return {
            "ceiling": self.ceiling,
            "adaptive": self.adaptive,
            "final": self.allowed,
            "lowest": max(1, int(self.lowest)),
            "decreases": self.decreases,
            "peak_in_flight": self.peak_in_flight,
            "timeouts": self.counts[Outcome.timed_out],
            "rate_limited": self.counts[Outcome.rate_limited],
        }

    # -- internals -------------------------------------------------------------------------

    async def _acquire(self) -> int:
        if not self._waiters and self.in_flight < self.allowed:
            self._take()
            return self.decreases
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted, then cancelled: give it back
                self.in_flight -= 1
                self._wake()
            raise

    def _take(self) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def _release(self, slot: Slot) -> None:
        self.in_flight -= 1
        self.counts[slot.outcome] += 1
        if self.adaptive:
            self._adjust(slot)
        self._wake()

    def _adjust(self, slot: Slot) -> None:
        if slot.outcome in OVERLOADED and slot.epoch == self.decreases:
            self.limit = max(1.0, self.limit / 2)
            self.lowest = min(self.lowest, self.limit)
            self.decreases += 1
        elif slot.outcome is Outcome.answered:
            self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)

    def _wake(self) -> None:
        """Hand free slots to the waiters, first come first served."""
        while self._waiters and self.in_flight < self.allowed:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(self.decreases)


__all__ = ["AdaptiveLimit", "Outcome", "Slot"]
