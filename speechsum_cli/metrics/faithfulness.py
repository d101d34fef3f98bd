"""Unsupported content: numbers and names in a summary that never occur in the transcript.

A deterministic, offline hallucination check. It is shared by ``eval`` (the offline half of the
hallucination metric) and by the offline judge of ``pairs``: one implementation.

* Numbers are compared by value, whatever their spelling: ``14``, ``14th``, ``fourteen`` and
  ``fourteenth`` are the same number; ``4.2 million`` matches ``four point two million``.
* Names and other capitalized terms (not at the start of a sentence or line) are compared
  case-insensitively against the transcript's words; a possessive ``'s`` is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
    "fortieth": 40,
    "fiftieth": 50,
    "sixtieth": 60,
    "seventieth": 70,
    "eightieth": 80,
    "ninetieth": 90,
    "hundredth": 100,
}
SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
TOKEN = re.compile(r"\d+(?:[.,]\d+)*(?:st|nd|rd|th)?|[A-Za-z]+(?:['’][A-Za-z]+)?|[.!?:;\n]")
SENTENCE_END = {".", "!", "?", ":", ";", "\n"}
NOT_NAMES = {"i"}


@dataclass(frozen=True)
class Unsupported:
    """What a summary states that the transcript does not support."""

    numbers: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.numbers) + len(self.names)

    @property
    def items(self) -> list[str]:
        return self.numbers + self.names


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def _word_value(word: str) -> int | None:
    lowered = word.lower()
    if lowered in UNITS:
        return UNITS[lowered]
    return ORDINALS.get(lowered)


def _digit_value(token: str) -> float | None:
    core = re.sub(r"(st|nd|rd|th)$", "", token).replace(",", "")
    try:
        return float(core)
    except ValueError:
        return None


def number_mentions(text: str) -> list[tuple[str, set[float]]]:
    """Each number mention as (surface text, the values it may stand for)."""
    tokens = _tokens(text)
    mentions: list[tuple[str, set[float]]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        start = i
        value: float | None = None
        if token[0].isdigit():
            value = _digit_value(token)
            i += 1
        elif _word_value(token) is not None:
            value, i = _parse_number_words(tokens, i)
        else:
            i += 1
            continue
        if value is None:
            continue
        values = {round(value, 6)}
        while i < len(tokens) and tokens[i].lower() in SCALES:  # "4.2 million", "two hundred"
            value *= SCALES[tokens[i].lower()]
            values.add(round(value, 6))
            i += 1
        mentions.append((" ".join(tokens[start:i]), values))
    return mentions


def _parse_number_words(tokens: list[str], i: int) -> tuple[float, int]:
    """Parse 'twenty one', 'four point two', 'fourteenth' starting at ``tokens[i]``."""
    current = 0.0
    while i < len(tokens):
        word = tokens[i].lower()
        value = _word_value(word)
        if value is not None:
            current += value
            i += 1
            if word in ORDINALS:
                break
        elif word == "hundred" and current:
            current *= 100
            i += 1
        elif word == "and" and current and i + 1 < len(tokens) and _word_value(tokens[i + 1]) is not None:
            i += 1
        elif word == "point" and i + 1 < len(tokens) and _word_value(tokens[i + 1]) is not None:
            decimals = ""
            i += 1
            while i < len(tokens) and (_word_value(tokens[i]) or 10) < 10:
                decimals += str(_word_value(tokens[i]))
                i += 1
            current = float(f"{int(current)}.{decimals}")
            break
        else:
            break
    return current, i


def capitalized_terms(text: str) -> list[str]:
    """Capitalized words that do not start a sentence or a line (names, places, products)."""
    terms: list[str] = []
    previous = "\n"
    for token in _tokens(text):
        if token in SENTENCE_END:
            previous = token
            continue
        if token[0].isupper() and previous not in SENTENCE_END and token.lower() not in NOT_NAMES:
            terms.append(token)
        previous = token
    return terms


def _word_set(text: str) -> set[str]:
    return {_strip_possessive(t.lower()) for t in _tokens(text) if t[0].isalpha()}


def _strip_possessive(word: str) -> str:
    return re.sub(r"['’]s$", "", word)


def unsupported_content(summary: str, transcript: str) -> Unsupported:
    """Numbers and capitalized terms in ``summary`` that ``transcript`` never mentions."""
    said_numbers: set[float] = set()
    for _, values in number_mentions(transcript):
        said_numbers |= values
    said_words = _word_set(transcript)
    numbers = [surface for surface, values in number_mentions(summary) if not values & said_numbers]
    names = [
        term
        for term in capitalized_terms(summary)
        if _strip_possessive(term.lower()) not in said_words and _word_value(term) is None
    ]
    return Unsupported(numbers=numbers, names=list(dict.fromkeys(names)))
