"""Text to speech over HTTP (``synth --tts openai:MODEL``): the remote engine beside the local
espeak-ng of :mod:`speechsum_cli.data.tts`.

It lives in the LLM layer because it is a batch of :meth:`LLMClient.speech` calls (the response
cache, the budget, the adaptive limit and the retries of every call), as :mod:`.batch` is one of
structured calls; the data layer stays free of HTTP.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from speechsum_cli.llm.client import LLMClient, Usage
from speechsum_cli.llm.config import LLMConfig
from speechsum_cli.llm.failures import reason_category
from speechsum_cli.llm.pool import run_pool
from speechsum_cli.llm.prices import BudgetExceeded


@dataclass
class SpokenBatch:
    """What speaking many texts did and cost."""

    usage: Usage
    """The client's ledger: requests, cache hits, characters (``input_tokens``), USD."""
    failed: dict[str, int]
    """Failure category -> texts that were not spoken (their wav files do not exist)."""
    stopped_by_budget: bool
    """``max_cost`` was reached: the texts after it were never sent."""


def speak_all(config: LLMConfig, jobs: list[tuple[str, Path]]) -> SpokenBatch:
    """Speak every ``(text, wav path)`` through ``/audio/speech`` of ``config``'s endpoint, at
    most ``config.concurrency`` at a time, in order; each wav is written beside its path, then
    renamed. Stops cleanly before a request that could pass ``config.max_cost``."""
    client = LLMClient(config)
    failed: Counter = Counter()

    async def speak_one(job: tuple[str, Path]) -> None:
        text, path = job
        result = await client.speech(text)
        if result.audio is None:
            failed[reason_category(result.reason)] += 1
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(result.audio)
        tmp.replace(path)

    async def speak_every() -> Exception | None:
        try:
            return await run_pool(jobs, speak_one, concurrency=config.concurrency, stop_on=(BudgetExceeded,))
        finally:
            await client.aclose()

    stopped = asyncio.run(speak_every())
    ledger = client.ledger
    usage = Usage(ledger.requests, ledger.cache_hits, ledger.input_tokens, ledger.output_tokens, ledger.cost_usd)
    return SpokenBatch(usage, dict(failed), stopped is not None)


__all__ = ["SpokenBatch", "speak_all"]
