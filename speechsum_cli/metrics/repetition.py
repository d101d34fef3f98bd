"""Repetition in generated text: the signature failure of on-policy distillation."""

from __future__ import annotations

import re

WORD = re.compile(r"[\w']+")
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def repeated_ngram_rate(text: str, n: int = 4) -> float:
    """Share of word n-grams that repeat an earlier n-gram (0 = none; -> 1 = a loop)."""
    tokens = words(text)
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def repeated_sentences(text: str) -> int:
    """Sentences (or lines) that occur more than once, counting every extra copy."""
    sentences = [" ".join(words(s)) for s in SENTENCE_SPLIT.split(text)]
    sentences = [s for s in sentences if s]
    return len(sentences) - len(set(sentences))
