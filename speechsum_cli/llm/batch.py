"""Many structured calls at once: bounded concurrency, budget stop, dry-run estimates.

Judges (eval, pairs) hand a dict of ``key -> messages`` to :func:`run_calls` and get every
:class:`Completion` back by key; failures stay in the results with their reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechsum_cli.llm.client import Completion, LLMClient, Usage
from speechsum_cli.llm.config import LLMConfig
from speechsum_cli.llm.failures import Failures, check_failures, retry_hint
from speechsum_cli.llm.pool import run_pool
from speechsum_cli.llm.prices import BudgetExceeded


@dataclass
class CallBatch:
    """What a batch of calls produced and cost."""

    results: dict[Any, Completion] = field(default_factory=dict)
    """Completed calls by key (ok or failed with a reason); calls not sent are absent."""
    stopped_by_budget: bool = False
    """--max-cost was reached: the calls that are absent from ``results`` were never sent."""
    usage: Usage = field(default_factory=Usage)
    """What the calls sent took, added up."""
    estimated_requests: int = 0
    """Dry run: calls that would need a request (not in the cache)."""
    estimated_input_tokens: int = 0
    estimated_output_tokens: int = 0
    estimated_cost_usd: float = 0.0
    concurrency: dict[str, Any] = field(default_factory=dict)
    """The adaptive limit's record: ceiling, final and lowest requests in flight, time-outs, 429s."""

    @property
    def failed(self) -> dict[Any, str]:
        return {k: c.reason or "unknown failure" for k, c in self.results.items() if not c.ok}

    def failures(self) -> Failures:
        """The failed calls among those sent (in completion order: the first is reported in full)."""
        return Failures.tally(len(self.results), self.failed.values())


def check_batch_failures(batch: CallBatch, config: LLMConfig, out: Path, unit: str) -> str | None:
    """The failure policy for a judge's batch: raises (nothing written to ``out``) when every call
    or more than ``max_failed_share`` failed; else the partial-failure warning (None if none)."""
    return check_failures(
        batch.failures(),
        max_share=config.max_failed_share,
        unit=unit,
        left=f"Nothing was written to '{out}'.",
        retry=retry_hint(config),
    )


def run_calls(
    config: LLMConfig,
    calls: dict[Any, list[dict[str, str]]],
    schema: dict[str, Any],
    *,
    prompt_version: str,
    concurrency: int,
    advance: Callable[[int], None] = lambda n=1: None,
) -> CallBatch:
    """Send every call (a dry run only estimates); stop cleanly when the budget is reached."""
    return asyncio.run(_run_calls(config, calls, schema, prompt_version, concurrency, advance))


async def _run_calls(
    config: LLMConfig,
    calls: dict[Any, list[dict[str, str]]],
    schema: dict[str, Any],
    prompt_version: str,
    concurrency: int,
    advance: Callable[[int], None],
) -> CallBatch:
    client = LLMClient(config)
    batch = CallBatch()
    try:
        if config.dry_run:
            for messages in calls.values():
                estimate = client.estimate(messages, prompt_version=prompt_version)
                batch.estimated_requests += 0 if estimate.cached else 1
                batch.estimated_input_tokens += estimate.input_tokens
                batch.estimated_output_tokens += estimate.output_tokens
                batch.estimated_cost_usd += estimate.cost_usd
            return batch

        async def one(call: tuple[Any, list[dict[str, str]]]) -> None:
            key, messages = call
            done = await client.complete_json(messages, schema, prompt_version=prompt_version)
            batch.results[key] = done
            batch.usage.add(done.usage)
            advance(1)

        stopped = await run_pool(calls.items(), one, concurrency=concurrency, stop_on=(BudgetExceeded,))
        batch.stopped_by_budget = stopped is not None
        batch.concurrency = client.in_flight.record()
        return batch
    finally:
        await client.aclose()
