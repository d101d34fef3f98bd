"""The paper's LLM judge: 1-7 per aspect + overall, and a flag for invented facts.

The rubric is a versioned prompt file (prompts/judge.json); every call goes through the shared
client (cache, retries, cost ledger, budget, dry run). A reply with a score out of range or no
parsable JSON is retried by the client and then counted as *failed* — never as a score of 0.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Callable

SCORE = {"type": "number", "minimum": 1, "maximum": 7}


@lru_cache(maxsize=1)
def rubric() -> dict[str, Any]:
    return json.loads(resources.files("speechsum_cli.prompts").joinpath("judge.json").read_text())


def judge_schema() -> dict[str, Any]:
    aspects = rubric()["aspects"] + ["overall"]
    return {
        "type": "object",
        "required": aspects + ["invented_facts", "rationale"],
        "properties": {
            **{a: SCORE for a in aspects},
            "invented_facts": {"type": "array", "items": {"type": "string"}},
            "rationale": {"type": "string"},
        },
    }


def judge_messages(transcript: str, query: str, summary: str) -> list[dict[str, str]]:
    spec = rubric()
    return [
        {"role": "system", "content": spec["system"]},
        {"role": "user", "content": spec["user"].format(transcript=transcript, query=query, summary=summary)},
    ]


def judge_scores(data: dict[str, Any]) -> dict[str, float]:
    """Our metric names for one validated judge reply."""
    scores = {f"judge_{a}": float(data[a]) for a in rubric()["aspects"]}
    scores["judge_overall"] = float(data["overall"])
    scores["judge_flags_invented_fact"] = float(bool(data["invented_facts"]))
    return scores


@dataclass
class JudgeRun:
    """Outcome of judging many summaries."""

    scores: dict[Any, dict[str, float]] = field(default_factory=dict)
    rationales: dict[Any, str] = field(default_factory=dict)
    failed: dict[Any, str] = field(default_factory=dict)
    """key -> reason (retries spent, invalid JSON...)."""
    stopped_by_budget: bool = False
    requests: int = 0
    cache_hits: int = 0
    cost_usd: float = 0.0
    estimated_cost_usd: float = 0.0
    """Dry run only: what the calls would cost."""


def judge_all(
    config: Any,
    items: dict[Any, tuple[str, str, str]],
    *,
    concurrency: int,
    advance: Callable[[int], None] = lambda n=1: None,
) -> JudgeRun:
    """Judge every ``key -> (transcript, query, summary)``; a dry run only estimates."""
    return asyncio.run(_judge_all(config, items, concurrency, advance))


async def _judge_all(config: Any, items: dict[Any, tuple[str, str, str]], concurrency: int,
                     advance: Callable[[int], None]) -> JudgeRun:
    from speechsum_cli.llm import BudgetExceeded, LLMClient

    version = rubric()["version"]
    client = LLMClient(config)
    run = JudgeRun()
    schema = judge_schema()
    if config.dry_run:
        for key, (transcript, query, summary) in items.items():
            run.estimated_cost_usd += client.estimate(judge_messages(transcript, query, summary),
                                                      prompt_version=f"judge-{version}").cost_usd
        await client.aclose()
        return run
    gate = asyncio.Semaphore(concurrency)

    async def one(key: Any, transcript: str, query: str, summary: str) -> None:
        async with gate:
            if run.stopped_by_budget:
                return
            try:
                done = await client.complete_json(judge_messages(transcript, query, summary), schema,
                                                  prompt_version=f"judge-{version}")
            except BudgetExceeded:
                run.stopped_by_budget = True
                return
        run.requests += done.requests
        run.cache_hits += done.cache_hits
        run.cost_usd += done.cost_usd
        if done.ok:
            run.scores[key] = judge_scores(done.data)
            run.rationales[key] = str(done.data.get("rationale", ""))
        else:
            run.failed[key] = done.reason or "unknown failure"
        advance(1)

    try:
        await asyncio.gather(*(one(k, *v) for k, v in items.items()))
    finally:
        await client.aclose()
    return run
