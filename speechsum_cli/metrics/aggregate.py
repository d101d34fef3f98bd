"""From per-row scores to system-level means with bootstrap 95% intervals, and who is best."""

from __future__ import annotations

import random
from dataclasses import dataclass

HIGHER_IS_BETTER = {
    "judge_overall": True,
    "judge_accuracy": True,
    "judge_coherence": True,
    "judge_style": True,
    "judge_hallucination": True,
    "judge_instruction_following": True,
    "judge_flags_invented_fact": False,
    "rouge1": True,
    "rouge2": True,
    "rougeL": True,
    "unsupported_items": False,
    "has_unsupported": False,
    "style_ok": True,
    "repetition": False,
    "repeated_sentences": False,
    "scaffold_echo": False,
    "real_time_factor": False,
    "wer": False,
    "cer": False,
}
"""Direction of each metric; metrics not listed (length) have no 'best'."""


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    n: int


def bootstrap(values: list[float], *, resamples: int = 1000, seed: int = 0) -> Estimate:
    """Mean with a percentile bootstrap 95% interval (deterministic for a given seed)."""
    if not values:
        raise ValueError("no values to aggregate")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return Estimate(mean, mean, mean, 1)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    low = means[int(0.025 * (resamples - 1))]
    high = means[int(round(0.975 * (resamples - 1)))]
    return Estimate(mean, low, high, n)


def best_systems(estimates: dict[str, Estimate], metric: str) -> set[str]:
    """Systems with the best mean for ``metric`` (ties share it; none for undirected metrics)."""
    if metric not in HIGHER_IS_BETTER or len(estimates) < 2:
        return set()
    pick = max if HIGHER_IS_BETTER[metric] else min
    best = pick(e.mean for e in estimates.values())
    return {name for name, e in estimates.items() if abs(e.mean - best) < 1e-12}
