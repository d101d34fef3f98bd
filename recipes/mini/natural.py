"""The natural register: clean scenario text turned into what people say, seeded.

Text is handled as spans: a literal word, or a filled slot (a name, a place, a number phrase) that
is one span however many words it has. Disfluencies go *between* spans, never inside a slot's
span, and never between a number or name and the word it runs into ("forty thousand | dollars",
"Nimbus | chargers": a slot without trailing punctuation keeps its next word). Each type has a
rate (``Rates``) per opportunity:

* filler      per word boundary: "um", "uh", "you know", "I mean", "like", "so", "okay", set off
              by commas ("we need, um, the budget").
* repetition  per function word (REPEATABLE): the word said twice ("the, the budget").
* false-start per sentence: its first words said and restarted ("We moved, we moved the
              launch"), or an abandoned opening ("So what I, let's look at ...").
* repair      per segment: one slot value first said wrong, then corrected ("by Tuesday, sorry,
              by Wednesday"). The value said last is the true one; the abandoned one is a
              distractor from the same pool, given by the caller (``Distractor``).
* aside       per sentence boundary: an aside of its own ("Sorry, can everyone hear me okay?").
* transition  between segments, always ("Okay, next item."); an opening and a closing per item.

The transcript is exactly the words spoken, disfluencies included. No inserted phrase has a
capitalized word (other than at a sentence start and "I") or a number word, except the
transition "One more thing."
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from string import Formatter
from typing import Any

TYPES = (
    "filler",
    "repetition",
    "false-start",
    "repair",
    "aside",
    "transition",
    "opening",
    "closing",
)
FILLERS = ("um", "uh", "you know", "I mean", "like", "so", "okay")
REPEATABLE = frozenset(
    {
        "the",
        "a",
        "an",
        "we",
        "we'll",
        "we're",
        "i",
        "it",
        "it's",
        "to",
        "and",
        "so",
        "this",
        "that",
        "they",
        "our",
        "is",
        "will",
        "for",
        "of",
        "in",
        "on",
        "by",
        "with",
        "from",
        "at",
        "was",
        "has",
        "have",
        "are",
    }
)
"""Words said twice in a repetition: short function words, as people repeat them."""
ABANDONED = ("So what I", "I was going to", "We should", "The thing is", "What we", "So the")
"""Openings of a false start that is dropped rather than restarted."""
RESTART_WORDS = (2, 3)
REPAIR_MARKERS = ("sorry", "I mean", "no, sorry", "actually", "no, wait")
PREPOSITIONS = frozenset(
    {
        "on",
        "by",
        "to",
        "from",
        "at",
        "in",
        "until",
        "for",
        "of",
        "than",
        "since",
        "about",
        "with",
        "before",
        "after",
    }
)
"""A word before a repaired value that is said again with the correction ("by X, sorry, by Y")."""
ASIDES = (
    "Sorry, can everyone hear me okay?",
    "Hang on, my screen froze.",
    "Sorry, I was on mute.",
    "Can you all see my screen?",
    "Bear with me for a moment.",
    "Sorry about the noise in the background.",
    "Let me just find my notes.",
    "Is the recording on?",
    "Sorry, my connection dropped for a moment.",
    "Hold on, someone is at the door.",
    "Can you hear me now?",
    "Let me share my screen again.",
)
TRANSITIONS = {
    "agenda": (
        "Okay, next item.",
        "Moving on.",
        "One more thing.",
        "Alright, next up.",
        "Let's move on to the next topic.",
        "Next on the agenda.",
        "Okay, switching gears.",
        "So, the next thing.",
    ),
    "lecture": (
        "Moving on to our next example.",
        "Let's look at another study.",
        "Okay, next example.",
        "Now for something different.",
        "Let's turn to the next case.",
    ),
}
OPENINGS = {
    "meeting": (
        "Okay, let's get started.",
        "Hi everyone, thanks for joining.",
        "Alright, let's begin.",
    ),
    "briefing": (
        "Here is the briefing for this week.",
        "Okay, quick briefing today.",
        "Hi all, a short update.",
    ),
    "call": (
        "Hi, thanks for hopping on the call.",
        "Hello, can you hear me? Great, let's start.",
        "Thanks for calling in, everyone.",
    ),
    "lecture": (
        "Good morning, everyone. Let's begin.",
        "Okay, let's get going with today's lecture.",
        "Welcome back, everyone.",
    ),
}
CLOSINGS = {
    "meeting": (
        "That's everything for today. Thanks, everyone.",
        "Okay, that's all I had.",
        "Great, let's wrap up there.",
    ),
    "briefing": (
        "That's the briefing. Thanks.",
        "That's all for this week.",
        "Okay, that's it from me.",
    ),
    "call": ("Thanks, talk soon.", "Okay, thanks for the call.", "Great, that's all. Bye."),
    "lecture": (
        "That's it for today. See you next time.",
        "We'll stop there for today.",
        "Okay, that's all for this lecture.",
    ),
}
SETTINGS = tuple(OPENINGS)
SENTENCE_TAILS = (".", "?", "!")
PUNCTUATION = ".,!?;:"
I_WORDS = frozenset({"I", "I'm", "I'll", "I'd", "I've"})


@dataclass(frozen=True)
class Span:
    """One word, or one filled slot however many words; what follows it without a space."""

    text: str
    tail: str = ""
    slot: str | None = None
    """The slot this span fills ('owner', 'owner.first'): never split, repeated or restarted."""
    tag: str | None = None
    """The disfluency that put this span here (None: the scenario's own words)."""

    @property
    def ends_sentence(self) -> bool:
        return self.tail.endswith(SENTENCE_TAILS)


@dataclass(frozen=True)
class Rates:
    """How often each disfluency happens, per opportunity (see the module docstring)."""

    filler: float = 0.04
    repetition: float = 0.04
    false_start: float = 0.08
    repair: float = 0.3
    aside: float = 0.05

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"rate {name} must be in [0, 1], not {value}")


@dataclass(frozen=True)
class Repair:
    """A slot value said wrong, then corrected."""

    slot: str
    said: str
    """The abandoned value (a distractor)."""
    value: str
    """The true value, said after the correction."""


@dataclass(frozen=True)
class Spoken:
    """An item as spoken: its transcript, what was inserted, and the repairs."""

    text: str
    counts: dict[str, int]
    repairs: tuple[Repair, ...]


Sentence = list[Span]
Distractor = Callable[[str], "str | None"]
"""slot name -> a wrong value for it from the same pool, or None when it has none."""


def no_distractor(slot: str) -> str | None:
    return None


@dataclass(frozen=True)
class Part:
    """One segment to speak: its filled spans, the slots that may be repaired, and where the
    wrong values for them come from."""

    spans: list[Span]
    repairable: frozenset[str] = frozenset()
    distractor: Distractor = no_distractor


# --- spans ---------------------------------------------------------------------------------------


def word_span(token: str, tag: str | None = None) -> Span:
    """'budget.' -> Span('budget', '.')."""
    core = token.rstrip(PUNCTUATION)
    return Span(core, token[len(core) :], tag=tag) if core else Span("", token, tag=tag)


def phrase(text: str, tag: str) -> list[Span]:
    """An inserted phrase as spans, all tagged."""
    return [word_span(token, tag) for token in text.split()]


def glue(spans: list[Span], tail: str) -> None:
    """Append ``tail`` (punctuation, "'s") to the last span."""
    spans[-1] = replace(spans[-1], tail=spans[-1].tail + tail)


def fill(template: str, values: Mapping[str, Any]) -> list[Span]:
    """``template.format(**values)`` as spans: each slot's value one span, the rest words."""
    spans: list[Span] = []
    formatter = Formatter()
    for literal, field, spec, conversion in formatter.parse(template):
        tokens = literal.split()
        if tokens and spans and not literal[0].isspace():
            glue(spans, tokens.pop(0))  # "{day}." / "{researcher}'s"
        spans += [word_span(t) for t in tokens]
        if field is not None:
            value = formatter.convert_field(formatter.get_field(field, (), values)[0], conversion)
            spans.append(Span(formatter.format_field(value, spec or ""), slot=field))
    return spans


def split_sentences(spans: list[Span]) -> list[Sentence]:
    """Spans cut after every span that ends a sentence."""
    out: list[Sentence] = [[]]
    for span in spans:
        out[-1].append(span)
        if span.ends_sentence:
            out.append([])
    return [s for s in out if s]


def render(sentences: list[Sentence]) -> str:
    """The words as text: a filler is set off by commas, and each sentence starts capitalized."""
    words: list[str] = []
    for sentence in sentences:
        for i, span in enumerate(sentence):
            if span.tag == "filler" and i and not sentence[i - 1].tail and words:
                words[-1] += ","
            text = span.text
            if i == 0 and text:
                text = text[0].upper() + text[1:]
            words.append(text + span.tail)
    return " ".join(w for w in words if w)


def decapitalize(span: Span) -> Span:
    """A sentence's first span moved inside it: its capital goes, unless it is a name (a slot,
    or a repair's wrong name), an inserted phrase, or 'I'."""
    if span.slot is not None or span.tag is not None or span.text.split(" ")[0] in I_WORDS:
        return span
    return replace(span, text=span.text[:1].lower() + span.text[1:])


def prepend(sentence: Sentence, spans: list[Span]) -> Sentence:
    """``spans`` said before the sentence's first word."""
    return [*spans, decapitalize(sentence[0]), *sentence[1:]]


def may_insert(before: Span | None, after: Span) -> bool:
    """Whether something may be said between two spans: not after a slot that runs into its
    next word ("forty | dollars"), and not next to another disfluency."""
    if before is not None and (before.tag is not None or (before.slot and not before.tail)):
        return False
    return after.tag is None


# --- disfluencies ------------------------------------------------------------------------------


def repair_one(
    sentences: list[Sentence],
    rng: random.Random,
    repairable: frozenset[str],
    distractor: Distractor,
) -> Repair | None:
    """Say one repairable slot of the segment wrong first, in place; the Repair, or None."""
    spots = [
        (si, i) for si, sentence in enumerate(sentences) for i, span in enumerate(sentence) if span.slot in repairable
    ]
    if not spots:
        return None
    si, i = rng.choice(spots)
    sentence, span = sentences[si], sentences[si][i]
    wrong = distractor(str(span.slot))
    if wrong is None:
        return None
    before = sentence[i - 1] if i else None
    echo = (
        [Span(before.text.lower(), tag="repair")]
        if before is not None and before.slot is None and not before.tail and before.text.lower() in PREPOSITIONS
        else []
    )
    said = [
        Span(wrong, ",", tag="repair"),
        *phrase(rng.choice(REPAIR_MARKERS) + ",", "repair"),
        *echo,
    ]
    sentences[si] = [*sentence[:i], *said, span, *sentence[i + 1 :]]
    return Repair(str(span.slot), wrong, span.text)


def false_start(sentence: Sentence, rng: random.Random) -> Sentence:
    """The sentence's first words said and restarted, or an abandoned opening before it."""
    k = rng.choice(RESTART_WORDS)
    head = sentence[:k]
    restartable = len(sentence) > k and all(s.slot is None and not s.tail and s.tag is None for s in head)
    if restartable and rng.random() < 0.5:
        copy = [replace(s, tag="false-start") for s in head]
        glue(copy, ",")
        return [*copy, decapitalize(head[0]), *sentence[1:]]
    return prepend(sentence, phrase(rng.choice(ABANDONED) + ",", "false-start"))


def repetitions(sentence: Sentence, rng: random.Random, rate: float) -> tuple[Sentence, int]:
    """Function words said twice at ``rate``; the new sentence and how many."""
    out: Sentence = []
    n = 0
    for i, span in enumerate(sentence):
        candidate = (
            span.slot is None
            and span.tag is None
            and not span.tail
            and span.text.lower() in REPEATABLE
            and may_insert(out[-1] if out else None, span)
        )
        if candidate and rng.random() < rate:
            n += 1
            if i == 0:
                out += [Span(span.text, ",", tag="repetition"), decapitalize(span)]
                continue
            out.append(Span(span.text, ",", tag="repetition"))
        out.append(span)
    return out, n


def fillers(sentence: Sentence, rng: random.Random, rate: float) -> tuple[Sentence, int]:
    """Fillers at ``rate`` per word boundary (the sentence start included); the new sentence
    and how many."""
    out: Sentence = []
    n = 0
    for i, span in enumerate(sentence):
        if may_insert(out[-1] if out else None, span) and rng.random() < rate:
            n += 1
            words = [Span(rng.choice(FILLERS), ",", tag="filler")]  # one span: "you know"
            if i == 0:
                out += [*words, decapitalize(span)]
                continue
            out += words
        out.append(span)
    return out, n


def naturalize_segment(
    part: Part, rng: random.Random, rates: Rates
) -> tuple[list[Sentence], Counter[str], list[Repair]]:
    """One segment's sentences with a repair, false starts, repetitions and fillers."""
    sentences = split_sentences(part.spans)
    counts: Counter[str] = Counter()
    repairs: list[Repair] = []
    if rng.random() < rates.repair:
        repair = repair_one(sentences, rng, part.repairable, part.distractor)
        if repair is not None:
            repairs.append(repair)
            counts["repair"] += 1
    out = []
    for sentence in sentences:
        if rng.random() < rates.false_start:
            sentence = false_start(sentence, rng)
            counts["false-start"] += 1
        sentence, n = repetitions(sentence, rng, rates.repetition)
        counts["repetition"] += n
        sentence, n = fillers(sentence, rng, rates.filler)
        counts["filler"] += n
        out.append(sentence)
    return out, counts, repairs


def said(text: str, tag: str) -> list[Sentence]:
    """A fixed phrase (an aside, a transition) as its own sentences."""
    return split_sentences(phrase(text, tag))


def with_asides(sentences: list[Sentence], rng: random.Random, rate: float) -> tuple[list[Sentence], int]:
    """Asides at ``rate`` per boundary between two sentences (never two in a row)."""
    out: list[Sentence] = []
    n = 0
    for i, sentence in enumerate(sentences):
        if i and out[-1][0].tag != "aside" and rng.random() < rate:
            out += said(rng.choice(ASIDES), "aside")
            n += 1
        out.append(sentence)
    return out, n


def speak(parts: list[Part], setting: str, rng: random.Random, rates: Rates = Rates()) -> Spoken:
    """A whole item in the natural register: an opening, the segments joined by transitions,
    disfluencies and asides at ``rates``, a closing."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, not {setting!r}")
    transitions = TRANSITIONS["lecture" if setting == "lecture" else "agenda"]
    counts: Counter[str] = Counter({"opening": 1, "closing": 1})
    repairs: list[Repair] = []
    body: list[Sentence] = []
    for k, part in enumerate(parts):
        sentences, seg_counts, seg_repairs = naturalize_segment(part, rng, rates)
        if k:
            body += said(rng.choice(transitions), "transition")
            counts["transition"] += 1
        body += sentences
        counts.update(seg_counts)
        repairs += seg_repairs
    body, counts["aside"] = with_asides(body, rng, rates.aside)
    sentences = [
        *said(rng.choice(OPENINGS[setting]), "opening"),
        *body,
        *said(rng.choice(CLOSINGS[setting]), "closing"),
    ]
    return Spoken(render(sentences), {t: counts.get(t, 0) for t in TYPES}, tuple(repairs))
