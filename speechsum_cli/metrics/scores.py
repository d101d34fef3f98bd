"""Per-row offline scores of one summary: the metrics eval reports and the offline judge ranks by."""

from __future__ import annotations

from typing import Any

from speechsum_cli.metrics.faithfulness import unsupported_content
from speechsum_cli.metrics.repetition import repeated_ngram_rate, repeated_sentences, words
from speechsum_cli.metrics.rouge import rouge
from speechsum_cli.metrics.style import Limits, check_preset
from speechsum_cli.prompts.styles import echoes_combine_scaffold


def limits_of(row: dict[str, Any]) -> Limits:
    """Word/bullet/sentence limits recorded on a row (synth's facet columns), if any."""

    def get(name: str) -> int | None:
        value = row.get(name)
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    return Limits(get("max_words"), get("max_bullets"), get("max_sentences"))


def offline_scores(prediction: str, row: dict[str, Any]) -> dict[str, float]:
    """Length, repetition, unsupported content, style compliance and (with a reference) ROUGE."""
    unsupported = unsupported_content(prediction, row.get("transcript") or "")
    scores: dict[str, float] = {
        "words": float(len(words(prediction))),
        "repetition": repeated_ngram_rate(prediction),
        "repeated_sentences": float(repeated_sentences(prediction)),
        "unsupported_items": float(unsupported.count),
        "has_unsupported": float(unsupported.count > 0),
        "scaffold_echo": float(echoes_combine_scaffold(prediction)),
    }
    reference = row.get("summary")
    if isinstance(reference, str) and reference.strip():
        scores.update(rouge(prediction, reference))
    check = check_preset(prediction, str(row.get("style") or ""), limits_of(row))
    if check is not None:
        scores["style_ok"] = float(check.ok)
    return scores
