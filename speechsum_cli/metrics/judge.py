"""The paper's LLM judges: 1-7 per aspect + overall (with an invented-fact flag), and pairwise.

The rubric is a versioned prompt file (prompts/judge.json); every call goes through the shared
client (cache, retries, cost ledger, budget, dry run). A reply with a score out of range or no
parsable JSON is retried by the client and then counted as *failed* — never as a score of 0.
"""

from __future__ import annotations

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


@lru_cache(maxsize=1)
def pairwise_prompt() -> dict[str, Any]:
    """The pairwise judge of the paper (prompts/pairwise.json): which of two summaries is better."""
    return json.loads(resources.files("speechsum_cli.prompts").joinpath("pairwise.json").read_text())


def pairwise_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["better", "rationale"],
        "properties": {"better": {"enum": ["A", "B", "tie"]}, "rationale": {"type": "string"}},
    }


def pairwise_messages(transcript: str, query: str, a: str, b: str) -> list[dict[str, str]]:
    spec = pairwise_prompt()
    return [
        {"role": "system", "content": spec["system"]},
        {"role": "user", "content": spec["user"].format(transcript=transcript, query=query, a=a, b=b)},
    ]


def judge_scores(data: dict[str, Any]) -> dict[str, float]:
    """Our metric names for one validated judge reply."""
    scores = {f"judge_{a}": float(data[a]) for a in rubric()["aspects"]}
    scores["judge_overall"] = float(data["overall"])
    scores["judge_flags_invented_fact"] = float(bool(data["invented_facts"]))
    return scores


@dataclass
class JudgeRun:
    """Scores, rationales and failures of judging many summaries, with the call batch's costs."""

    batch: Any
    failed: dict[Any, str]
    """key -> reason (retries spent, invalid JSON...)."""
    scores: dict[Any, dict[str, float]] = field(default_factory=dict)
    rationales: dict[Any, str] = field(default_factory=dict)

    @property
    def stopped_by_budget(self) -> bool:
        return self.batch.stopped_by_budget

    @property
    def requests(self) -> int:
        return self.batch.usage.requests

    @property
    def cache_hits(self) -> int:
        return self.batch.usage.cache_hits

    @property
    def cost_usd(self) -> float:
        return self.batch.usage.cost_usd

    @property
    def estimated_cost_usd(self) -> float:
        return self.batch.estimated_cost_usd


def judge_all(
    config: Any,
    items: dict[Any, tuple[str, str, str]],
    *,
    concurrency: int,
    advance: Callable[[int], None] = lambda n=1: None,
) -> JudgeRun:
    """Judge every ``key -> (transcript, query, summary)``; a dry run only estimates."""
    from speechsum_cli.llm.batch import run_calls

    calls = {key: judge_messages(*texts) for key, texts in items.items()}
    batch = run_calls(
        config,
        calls,
        judge_schema(),
        prompt_version=f"judge-{rubric()['version']}",
        concurrency=concurrency,
        advance=advance,
    )
    run = JudgeRun(batch=batch, failed=batch.failed)
    for key, done in batch.results.items():
        if done.ok:
            run.scores[key] = judge_scores(done.data)
            run.rationales[key] = str(done.data.get("rationale", ""))
    return run
