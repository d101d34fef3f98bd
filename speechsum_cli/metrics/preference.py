"""Turning judgements of candidates into (chosen, rejected) pairs.

* offline: rank candidates by a deterministic key, faithfulness first;
* pairwise: an LLM compares two candidates in both orders; only consistent verdicts count;
* rubric: an LLM scores each candidate; best vs worst with a minimum margin.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from speechsum_cli.metrics.scores import offline_scores


def normalized(text: str) -> str:
    """Text compared for 'identical candidates': case and whitespace do not matter."""
    return re.sub(r"\s+", " ", text.strip().lower())


def offline_key(scores: dict[str, float]) -> tuple[float, ...]:
    """Sort key, larger is better: fewer unsupported items, then less repetition, then style
    compliance, then ROUGE-L against the reference (when there is one)."""
    return (
        -scores["unsupported_items"],
        -scores["repeated_sentences"],
        -round(scores["repetition"], 6),
        scores.get("style_ok", 0.0),
        round(scores.get("rougeL", 0.0), 6),
    )


def offline_score(scores: dict[str, float]) -> float:
    """One number for reports (the ranking itself uses :func:`offline_key`)."""
    return (
        -scores["unsupported_items"]
        - scores["repeated_sentences"]
        - 2 * scores["repetition"]
        + 0.5 * scores.get("style_ok", 0.0)
        + scores.get("rougeL", 0.0)
    )


def rank_offline(candidates: list[str], row: dict[str, Any]) -> tuple[int, int, list[float], bool]:
    """(best index, worst index, scores, tie) — tie when best and worst have equal keys."""
    all_scores = [offline_scores(c, row) for c in candidates]
    keys = [offline_key(s) for s in all_scores]
    best = max(range(len(candidates)), key=lambda i: (keys[i], -i))
    worst = min(range(len(candidates)), key=lambda i: (keys[i], i))
    return best, worst, [offline_score(s) for s in all_scores], keys[best] == keys[worst]


def resolve_pairwise(first_as_a: str, first_as_b: str) -> str:
    """Combine the verdicts of both orders for candidates (first, second).

    ``first_as_a`` is the verdict when ``first`` was shown as A, ``first_as_b`` when it was B.
    Returns 'first', 'second', 'tie', or 'inconsistent' (position bias: the verdicts disagree).
    """
    if first_as_a == "A" and first_as_b == "B":
        return "first"
    if first_as_a == "B" and first_as_b == "A":
        return "second"
    if first_as_a == "tie" and first_as_b == "tie":
        return "tie"
    return "inconsistent"


def candidate_pairs(k: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(k), 2))


def tournament(k: int, outcomes: dict[tuple[int, int], str]) -> tuple[int, int, list[float], bool]:
    """Round-robin over consistent outcomes: (most wins, fewest wins, wins, tie)."""
    wins = [0.0] * k
    for (i, j), outcome in outcomes.items():
        if outcome == "first":
            wins[i] += 1
        elif outcome == "second":
            wins[j] += 1
        elif outcome == "tie":
            wins[i] += 0.5
            wins[j] += 0.5
    best = max(range(k), key=lambda i: (wins[i], -i))
    worst = min(range(k), key=lambda i: (wins[i], i))
    return best, worst, wins, wins[best] == wins[worst]
