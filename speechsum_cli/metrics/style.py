"""Style compliance: does a summary have the form its preset (and any limits) asked for?

Formats (the ``format`` field of each preset in prompts/styles.json):

* ``bullets``: every non-empty line is a bullet (``-``, ``*``, ``•``, ``1.`` or ``1)``).
* ``chapters``: every non-empty line is a bullet of the form ``Title: summary``.
* ``paragraph``: prose in one paragraph, no bullets.
* ``sentence``: exactly one sentence, no bullets.

Limits (``max_words``, ``max_bullets``, ``max_sentences``) come from the preset or from the
facets synth drew for the row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S")
CHAPTER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+[^:\n]{1,80}:\s+\S")
SENTENCE_END = re.compile(r"[.!?]+(?=\s+[A-Z0-9\"'(]|\s*$)")
FORMATS = ("bullets", "chapters", "paragraph", "sentence")


@dataclass(frozen=True)
class Limits:
    max_words: int | None = None
    max_bullets: int | None = None
    max_sentences: int | None = None


@dataclass(frozen=True)
class StyleCheck:
    ok: bool
    violations: list[str] = field(default_factory=list)


def count_sentences(text: str) -> int:
    stripped = text.strip()
    if not stripped:
        return 0
    ends = len(SENTENCE_END.findall(stripped))
    return ends + (0 if re.search(r"[.!?]+\s*$", stripped) else 1)


def check_style(text: str, fmt: str, limits: Limits = Limits()) -> StyleCheck:
    """Violations of ``fmt`` and ``limits`` in ``text`` (empty list = compliant)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown style format {fmt!r}; expected one of {', '.join(FORMATS)}")
    lines = [line for line in text.splitlines() if line.strip()]
    violations: list[str] = []
    if not lines:
        return StyleCheck(False, ["empty summary"])
    bullets = [line for line in lines if BULLET.match(line)]
    if fmt in ("bullets", "chapters"):
        if len(bullets) != len(lines):
            violations.append(f"{len(lines) - len(bullets)} of {len(lines)} lines are not bullets")
        if fmt == "chapters":
            untitled = [line for line in bullets if not CHAPTER.match(line)]
            if untitled:
                violations.append(f"{len(untitled)} chapter(s) lack a 'Title: summary' form")
    else:
        if bullets:
            violations.append(f"{len(bullets)} bullet line(s) in a {fmt}")
        if re.search(r"\n\s*\n", text.strip()):
            violations.append("more than one paragraph")
        if fmt == "sentence" and count_sentences(text) != 1:
            violations.append(f"{count_sentences(text)} sentences, expected 1")
    n_words = len(re.findall(r"[\w']+", text))
    if limits.max_words is not None and n_words > limits.max_words:
        violations.append(f"{n_words} words, limit {limits.max_words}")
    if limits.max_bullets is not None and len(bullets) > limits.max_bullets:
        violations.append(f"{len(bullets)} bullets, limit {limits.max_bullets}")
    if limits.max_sentences is not None and count_sentences(text) > limits.max_sentences:
        violations.append(f"{count_sentences(text)} sentences, limit {limits.max_sentences}")
    return StyleCheck(not violations, violations)


def check_preset(text: str, style_name: str, limits: Limits = Limits()) -> StyleCheck | None:
    """Check ``text`` against a preset (None for free-text queries: nothing to check)."""
    from speechsum_cli.prompts.styles import styles

    preset = styles().get(style_name)
    if preset is None:
        return None
    if preset.max_bullets is not None and limits.max_bullets is None:
        limits = Limits(limits.max_words, preset.max_bullets, limits.max_sentences)
    return check_style(text, preset.format, limits)
