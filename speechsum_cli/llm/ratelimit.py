"""Requests-per-minute and tokens-per-minute limits over a sliding 60 s window (asyncio)."""

from __future__ import annotations

import asyncio
import collections
import time

WINDOW_SECONDS = 60.0


class RateLimiter:
    """``await acquire(tokens)`` waits until one more request of ``tokens`` fits both limits."""

    def __init__(self, rpm: int | None = None, tpm: int | None = None, *, window: float = WINDOW_SECONDS) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.window = window
        self._events: collections.deque[tuple[float, int]] = collections.deque()
        self._tokens = 0
        self._lock = asyncio.Lock()

    def _prune(self, now: float) -> None:
        while self._events and now - self._events[0][0] >= self.window:
            _, tokens = self._events.popleft()
            self._tokens -= tokens

    def _fits(self, tokens: int) -> bool:
        if self.rpm is not None and len(self._events) >= self.rpm:
            return False
        if self.tpm is not None and self._events and self._tokens + tokens > self.tpm:
            return False  # an empty window always admits one request, however large
        return True

    async def acquire(self, tokens: int = 0) -> None:
        if self.rpm is None and self.tpm is None:
            return
        async with self._lock:  # first come, first served
            while True:
                now = time.monotonic()
                self._prune(now)
                if self._fits(tokens):
                    self._events.append((now, tokens))
                    self._tokens += tokens
                    return
                await asyncio.sleep(max(0.01, self.window - (now - self._events[0][0])))
