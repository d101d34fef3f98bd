"""The hearing corpus: hours of diverse spoken English for the transcription warm-up (issue 18).

    python recipes/mini/make_hearing.py OUT_DIR [--hours 12] [--heldout 100] [--seed 0]
                                        [--max-seconds 15.5] [--pools-share 0.18] [--workers 2]
                                        [--voice-family espeak|train] [--name-pool mini|large]
                                        [--overwrite]

Why. The mini student's fresh projector learns to "hear" from diverse speech: a probe trained on
4,400 clips of plain sentences (13.5 h, 8.7k distinct words) reached a CTC WER of 0.23 on unseen
sentences, while the 300 templated items of make_corpus.py are only memorized.

Text. Sentences mined offline from the docstrings of installed Python modules (the standard library
and site-packages): source files are parsed with ``ast`` (nothing is imported), read in a seeded
round robin over packages until enough text is found, and cleaned to plain speakable English by
``speakable``: 6-30 alphabetic words, a capital first and a full stop last, and no code (no
underscores, brackets, colons, backticks, quotes, digits, URLs, doctest or reST markup, indented
blocks, CamelCase or Python jargon). Candidates are deduplicated, sorted, then shuffled with the
seed. The test set's names and spoken numbers never occur in docstrings, so a share of the clips
(--pools-share) speaks sentences built from the scenario pools (pools.py: people, cities,
products, amounts, dates, numbers as words, spelled as make_corpus.py writes them) in carrier
sentences of this file; no carrier shares a phrase with a held-out scenario (scenarios with
``split="test"`` or ``"valid"``), so the mini test set stays unseen in content.

Speech. Consecutive sentences of one source are packed into a clip while its estimated duration
stays under --max-seconds less a second (clips come out 10-15 s, 12.5 s typically), and rendered
by espeak-ng with a voice and a speed (140-190 words per minute) drawn per clip from the seed;
--workers processes run at once. With --voice-family train, each clip's voice is drawn from the
long corpus's train family instead (voices.py: espeak-ng accents, variants, speeds and pitches
and flite, all perturbed with speed, noise and gain). With --name-pool large, the carrier
sentences name people, cities, products, companies and clients of the large pools' train part
(pools.large_pools("train")) instead of the mini pools; the held-out part is never spoken.
The defaults (espeak, mini) give the corpus this script always gave. Every wav is measured: one
longer than --max-seconds (default 15.5, under the student's 16 s window) is rendered again
without its last sentence; audio is never cut. Such shortenings are counted in hearing.json.

Writes OUT_DIR (atomically: built in OUT_DIR.tmp, then renamed):
  audio/ID.wav     espeak-ng speech, 22.05 kHz mono
  train.jsonl      id, audio, transcript, query (the eval ASR_QUERY), style "custom",
  heldout.jsonl    summary = transcript, voice, speed, source ("docstrings" | "pools"); with
                   --voice-family train, voice is voices.Voice.label and speed its estimated
                   words per minute;
                   --heldout clips (the first ones rendered) whose sentences never occur in train,
                   then train clips until --hours of train audio
  hearing.json     counts, seed, hours, distinct words, voices and speeds, longest clip, text
                   sources (files, packages), shortened clips, wall time

The same installed packages, --seed and options give the same corpus.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shutil
import site
import sys
import sysconfig
import time
import warnings
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

from make_corpus import WORD, positive_float, positive_int, speak, template_fields, write_jsonl
from pools import POOLS, Pool, draw_slots, large_pools, words
from rich.console import Console
from rich.progress import Progress
from scenarios import SCENARIOS
from voices import Voice, draw_voice, family_bases, missing_voices, problems
from voices import render as render_voice

from speechsum_cli.stages.evaluate import ASR_QUERY

VOICES = (
    "en-us",
    "en",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-us+m3",
    "en+f2",
    "en-us+f4",
    "en+m7",
    "en-029+m1",
)
"""espeak-ng voices (a language, or language+variant); ``espeak-ng --voices=en`` lists them."""
SPEEDS = (140, 190)
"""Words per minute, inclusive bounds."""
MAX_SECONDS = 15.5
"""Longest clip: under the mini student's 16 s window."""
FILL_MARGIN = 1.0
"""Clips are packed up to an estimated MAX_SECONDS - FILL_MARGIN, so few need shortening."""
SENTENCE_WORDS = (6, 30)
MAX_ACRONYM = 5
"""All-capital words longer than this are constants (DEFAULT_TIMEOUT), not acronyms (HTTP)."""
POOLS_SHARE = 0.18
MINE_MARGIN = 1.3
"""Docstring words mined per word the corpus is expected to need."""
MIN_MINED_WORDS = 2000
SECONDS_PER_CLIP = 13.0
"""Rough clip length, for the text budget and the progress bar only."""
AUDIO_DIR = "audio"
DOCSTRINGS, POOL_SOURCE = "docstrings", "pools"
VOICE_FAMILIES = ("espeak", "train")
"""espeak: VOICES x SPEEDS (the default); train: voices.py's train family."""
NAME_POOLS = ("mini", "large")
"""mini: pools.POOLS (the default); large: the train part of pools.large_pools."""

SKIP_DIRS = {"__pycache__", "site-packages", "dist-packages", "test", "tests"}
"""Not walked: caches, the site-packages inside the stdlib root, test suites."""
DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
CODE_CHARS = set('_[](){}<>=*`\\|#@$%^~/"+&:')
MARKUP_STARTS = (">>>", "...", "..", ":", "- ", "* ", "+ ", "|", "#", "=")
UNDERLINE = re.compile(r"([-=~^*+#'`\"])\1{2,}")
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
PLAIN_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")
JARGON = frozenset(
    words(
        "self cls args kwargs kwarg argv str int bool dict dtype dtypes func obj attr attrs "
        "param params repr len init stdin stdout stderr utf eval exec lambda async await def "
        "etc vs cf al ie eg viz approx resp"
    )
)
"""Lower-case words that are code or abbreviations espeak does not say as written."""
CODE_LITERALS = frozenset({"None", "True", "False"})
"""Code when not the first word ("returns None")."""

CARRIERS = (
    "{person} moved the review to {date}.",
    "{person} flew from {city} to {city2} on {weekday}.",
    "The {product} team shipped {count} boxes last month.",
    "{person.first} thinks the work on {feature} will take {small} more days.",
    "{company} hired {medium} engineers in {city} this year.",
    "Our {system} service was down for {minutes} minutes because of {cause}.",
    "{client} pays {price} dollars a month for the {service} contract.",
    "The {team} team spent {money} dollars on {channel} last quarter.",
    "{person} expects {millions} dollars of revenue from {product}.",
    "About {percent} percent of our users in {city} turned on {feature}.",
    "{person} and {person2} will meet in {city} on {date}.",
    "The museum in {city} shows a map from the {century} century.",
    "{person.first} was born in {year} and grew up near {city}.",
    "We counted {count} {species} along the river on {date}.",
    "{person} asked {person2.first} to call {client} before {weekday}.",
    "{company} quoted {big_money} dollars for the new building.",
    "The price of {product} went up by {percent} percent to {price} dollars.",
    "{person.first} said the contract with {company} starts on {date}.",
    "{person} earns {salary} dollars a year on the {team} team.",
    "Please send the {product} slides to {person.first} by {weekday} morning.",
    "The train from {city} to {city2} takes {small} hours and costs {price} dollars.",
    "{person} has run the {team} desk in {city} since {year}.",
    "It took {person.first} {minutes} minutes to fix the {system} page.",
    "{person.first} booked {small} rooms in {city} for {date} and {date2}.",
    "{company} and {company2} agreed to share {money} dollars of {service} costs.",
    "{person} wrote a history of {city} in the {century} century.",
    "Next {weekday}, {person.first} will show the {product} demo to {client}.",
    "The survey found {medium} nests of {species}, {small} fewer than last spring.",
    "{person} says {cause} broke the {system} system on {date}.",
    "Ticket number {count} was closed by {person.first} after {minutes} minutes.",
    "The {part} for {product} cost {company} {big_money} dollars in {year}.",
    "{person.first} paid {money} dollars for {small} tickets to {city2}.",
    "On {date} the {team} team moved from {city} to {city2}.",
    "{client} asked for {count} copies of the {product} manual.",
    "{person2} thanked {person.first} for the {channel} plan.",
)
"""Sentences spoken with pool values: ``{pool}``, ``{pool2}`` (a second, different value),
``{person.first}``; numbers come out as words (pools.POOLS)."""
HELD_OUT_RUN = 4
"""A carrier may share no run of this many tokens (a slot is one) with a held-out scenario."""


class CarrierError(Exception):
    """A carrier sentence breaks the corpus's contract."""


@dataclass(frozen=True)
class PySource:
    """One Python source file: its package (first path part) and its sort key."""

    package: str
    key: str
    """'stdlib/json/decoder.py': the root's name and the path relative to the root."""
    path: Path


@dataclass(frozen=True)
class Sentence:
    text: str
    source: str
    """DOCSTRINGS or POOL_SOURCE."""
    origin: str
    """The package a docstring sentence came from, or the carrier's index."""


@dataclass(frozen=True)
class Mined:
    sentences: list[Sentence]
    files_listed: int
    files_read: int
    files_unparsed: int
    packages_listed: int
    packages_read: int


@dataclass(frozen=True)
class Plan:
    """A clip before rendering: its sentences, voice and speed."""

    index: int
    source: str
    voice: str
    speed: int
    sentences: tuple[Sentence, ...]
    timbre: Voice | None = None
    """The voices.py voice that renders the clip (--voice-family train); None: espeak-ng's
    ``voice`` at ``speed``."""

    @property
    def id(self) -> str:
        return f"hear-{self.index:06d}"

    @property
    def audio(self) -> str:
        return f"{AUDIO_DIR}/{self.id}.wav"


@dataclass(frozen=True)
class Clip:
    """A rendered clip: the sentences actually spoken (the plan's, or fewer to fit)."""

    plan: Plan
    sentences: tuple[Sentence, ...]
    seconds: float

    @property
    def transcript(self) -> str:
        return " ".join(s.text for s in self.sentences)

    @property
    def shortened_by(self) -> int:
        return len(self.plan.sentences) - len(self.sentences)


@dataclass(frozen=True)
class Rendered:
    heldout: list[Clip]
    train: list[Clip]
    dropped: list[Clip]
    """Clips whose first sentence alone was longer than --max-seconds: no wav, no row."""

    @property
    def spoken(self) -> list[Clip]:
        return self.heldout + self.train


# --- text: docstrings ------------------------------------------------------------------------


def source_roots() -> list[tuple[str, Path]]:
    """The standard library and every site-packages directory, named for the sort keys."""
    roots = [("stdlib", Path(sysconfig.get_paths()["stdlib"]))]
    roots += [("site-packages", Path(p)) for p in site.getsitepackages()]
    seen: set[Path] = set()
    unique = []
    for name, root in roots:
        if root.is_dir() and root.resolve() not in seen:
            seen.add(root.resolve())
            unique.append((name, root))
    return unique


def python_sources(roots: Iterable[tuple[str, Path]]) -> list[PySource]:
    """Every .py file under ``roots`` (no caches, tests, nested site-packages), sorted by key."""
    found = []
    for name, root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and d.isidentifier())
            for file in files:
                if file.endswith(".py"):
                    rel = Path(folder, file).relative_to(root)
                    package = rel.parts[0].removesuffix(".py")
                    found.append(PySource(package, f"{name}/{rel.as_posix()}", root / rel))
    return sorted(found, key=lambda s: s.key)


def reading_order(sources: list[PySource], rng: random.Random) -> list[PySource]:
    """A seeded round robin over packages, so small packages are read as early as big ones."""
    by_package: dict[str, list[PySource]] = {}
    for s in sources:
        by_package.setdefault(s.package, []).append(s)
    packages = sorted(by_package)
    rng.shuffle(packages)
    queues = []
    for package in packages:
        files = list(by_package[package])
        rng.shuffle(files)
        queues.append(files)
    longest = max((len(q) for q in queues), default=0)
    return [q[turn] for turn in range(longest) for q in queues if turn < len(q)]


def docstrings(tree: ast.AST) -> Iterator[str]:
    """The docstrings of a module, its classes and its functions, in ast.walk order."""
    for node in ast.walk(tree):
        if isinstance(node, DOC_NODES):
            doc = ast.get_docstring(node)
            if doc:
                yield doc


def prose_paragraphs(doc: str) -> Iterator[str]:
    """Paragraphs of flush-left prose, joined into one line; code, lists and headings dropped."""
    for block in re.split(r"\n\s*\n", doc):
        lines = block.splitlines()
        structural = any(
            line[:1].isspace() or line.lstrip().startswith(MARKUP_STARTS) or UNDERLINE.fullmatch(line.strip())
            for line in lines
        )
        if lines and not structural:
            yield " ".join(" ".join(lines).split())


def speakable(sentence: str) -> bool:
    """Whether ``sentence`` is plain English that espeak-ng says as written (see the docstring)."""
    if not sentence or not sentence.isascii() or not sentence[0].isupper():
        return False
    if sentence[-1] not in ".!?" or "http" in sentence or "www" in sentence:
        return False
    if any(c in CODE_CHARS or c.isdigit() for c in sentence):
        return False
    tokens = sentence[:-1].split()
    if not SENTENCE_WORDS[0] <= len(tokens) <= SENTENCE_WORDS[1]:
        return False
    for i, token in enumerate(tokens):
        word = token.removesuffix(",").removesuffix(";")
        if not PLAIN_WORD.fullmatch(word) or word.lower() in JARGON:
            return False
        if i > 0 and word in CODE_LITERALS:
            return False
        if word.isupper() and len(word) > MAX_ACRONYM:
            return False
        if not word.isupper() and word[1:] != word[1:].lower():  # CamelCase, mixedCase
            return False
    return True


def doc_sentences(doc: str) -> Iterator[str]:
    """The speakable sentences of one docstring."""
    for paragraph in prose_paragraphs(doc):
        yield from (s for s in SENTENCE_BREAK.split(paragraph) if speakable(s))


def sentence_key(text: str) -> str:
    """Sentences that differ only in case or spacing are one sentence."""
    return " ".join(text.lower().split())


def mine(sources: list[PySource], rng: random.Random, words_wanted: int, progress: Progress) -> Mined:
    """Distinct speakable docstring sentences, read in ``reading_order`` until ``words_wanted``;
    returned sorted, then shuffled with ``rng``."""
    found: dict[str, Sentence] = {}
    have = read = unparsed = 0
    packages: set[str] = set()
    task = progress.add_task("reading docstrings", total=words_wanted)
    for src in reading_order(sources, rng):
        if have >= words_wanted:
            break
        read += 1
        packages.add(src.package)
        try:
            with warnings.catch_warnings():  # invalid escapes etc. in other people's code
                warnings.simplefilter("ignore")
                tree = ast.parse(src.path.read_bytes(), filename=str(src.path))
        except (SyntaxError, ValueError, RecursionError, OSError):  # Python 2, bad encodings
            unparsed += 1
            continue
        for doc in docstrings(tree):
            for text in doc_sentences(doc):
                key = sentence_key(text)
                if key not in found:
                    found[key] = Sentence(text, DOCSTRINGS, src.package)
                    n = len(text.split())
                    have += n
                    progress.advance(task, n)
    progress.update(task, completed=words_wanted)
    sentences = [found[key] for key in sorted(found)]
    rng.shuffle(sentences)
    return Mined(
        sentences,
        files_listed=len(sources),
        files_read=read,
        files_unparsed=unparsed,
        packages_listed=len({s.package for s in sources}),
        packages_read=len(packages),
    )


# --- text: pools -----------------------------------------------------------------------------


def carrier_slots(carrier: str) -> dict[str, str]:
    """Slot name -> pool name: '{person2.first}' -> {'person2': 'person'}; sorted by name, so
    the draws do not depend on set order (which changes with PYTHONHASHSEED)."""
    names = sorted({field.split(".")[0] for field in template_fields(carrier)})
    return {name: name.rstrip("0123456789") for name in names}


def masked_runs(template: str, n: int = HELD_OUT_RUN) -> set[tuple[str, ...]]:
    """Runs of ``n`` lower-case words of a template, each slot one '#' token; runs of more
    slots than words ("# and # will") say nothing about a template and are left out."""
    tokens = re.findall(r"[\w']+|#", re.sub(r"\{[^}]*\}", " # ", template).lower())
    runs = (tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return {run for run in runs if run.count("#") <= 1}


def held_out_templates() -> list[str]:
    """Every text of the scenarios held out of training (the mini test set's, the long corpus's
    validation and test kinds)."""
    return [
        text
        for s in SCENARIOS
        if s.split != "train"
        for text in (*s.transcripts, s.tldr, *s.points, *s.decisions, *s.actions)
    ]


def validate_carriers(carriers: tuple[str, ...] = CARRIERS) -> None:
    """Every slot names a pool; no carrier repeats a phrase of a held-out scenario."""
    problems = []
    held_out = set().union(*(masked_runs(t) for t in held_out_templates()))
    for carrier in carriers:
        problems += [
            f"{carrier!r}: pool {pool!r} does not exist"
            for pool in carrier_slots(carrier).values()
            if pool not in POOLS
        ]
        shared = masked_runs(carrier) & held_out
        problems += [f"{carrier!r} shares {' '.join(run)!r} with a held-out scenario" for run in sorted(shared)]
    if problems:
        raise CarrierError("carrier sentences are inconsistent:\n  " + "\n  ".join(problems))


def name_pools(name_pool: str) -> dict[str, Pool]:
    """The pools the carriers are filled from (NAME_POOLS)."""
    return dict(POOLS) if name_pool == "mini" else large_pools("train")


def pool_sentences(seed: int, pools: dict[str, Pool] = POOLS) -> Iterator[Sentence]:
    """An endless stream of distinct carrier sentences filled from ``pools``, from ``seed``."""
    rng = random.Random(f"{seed}:pools")
    seen: set[str] = set()
    while True:
        index = rng.randrange(len(CARRIERS))
        carrier = CARRIERS[index]
        text = carrier.format(**draw_slots(carrier_slots(carrier), (), rng, pools))
        text = text[0].upper() + text[1:]
        if sentence_key(text) not in seen:
            seen.add(sentence_key(text))
            yield Sentence(text, POOL_SOURCE, f"carrier-{index}")


# --- clips -----------------------------------------------------------------------------------


def estimate_seconds(text: str, speed: int) -> float:
    """Roughly how long espeak-ng speaks ``text`` at ``speed`` words per minute: fitted on 200
    packed clips of docstring and pool sentences (a "word" of 6.4 characters, plus a pause of
    0.85 words per sentence); within -10%/+20% of the rendered duration."""
    sentences = len(SENTENCE_BREAK.split(text))
    return (len(text) / 6.4 + 0.85 * sentences) * 60.0 / speed


class Stream:
    """An iterator of sentences that can put one back."""

    def __init__(self, items: Iterator[Sentence]):
        self.items = items
        self.back: list[Sentence] = []

    def next(self) -> Sentence | None:
        return self.back.pop() if self.back else next(self.items, None)

    def push(self, item: Sentence) -> None:
        self.back.append(item)


def clip_voice(rng: random.Random, family: str) -> tuple[str, int, Voice | None]:
    """A clip's voice, speed and (--voice-family train) voices.py voice."""
    if family == "espeak":
        return rng.choice(VOICES), rng.randint(*SPEEDS), None
    timbre = draw_voice("train", rng)
    return timbre.label, round(timbre.words_per_minute), timbre


def plan_clips(
    docs: list[Sentence],
    seed: int,
    pools_share: float,
    max_seconds: float,
    voice_family: str = "espeak",
    pools: dict[str, Pool] = POOLS,
) -> Iterator[Plan]:
    """Clips of consecutive sentences of one source, each up to an estimated
    ``max_seconds - FILL_MARGIN``; ends when the docstring sentences run out."""
    streams = {DOCSTRINGS: Stream(iter(docs)), POOL_SOURCE: Stream(pool_sentences(seed, pools))}
    budget = max_seconds - FILL_MARGIN
    for index in count():
        rng = random.Random(f"{seed}:clip:{index}")
        source = POOL_SOURCE if rng.random() < pools_share else DOCSTRINGS
        voice, speed, timbre = clip_voice(rng, voice_family)
        stream, taken = streams[source], []
        while (sentence := stream.next()) is not None:
            text = " ".join(s.text for s in (*taken, sentence))
            if taken and estimate_seconds(text, speed) > budget:
                stream.push(sentence)
                break
            taken.append(sentence)
        if not taken:
            return
        yield Plan(index, source, voice, speed, tuple(taken), timbre)


def render_clip(plan: Plan, out: Path, max_seconds: float) -> Clip:
    """Render a plan, dropping trailing sentences until it fits ``max_seconds`` (never cutting
    audio); a clip whose first sentence alone is too long comes back empty, without a wav."""
    sentences = list(plan.sentences)
    wav = out / plan.audio
    while sentences:
        text = " ".join(s.text for s in sentences)
        if plan.timbre is None:
            seconds = speak(text, wav, plan.speed, plan.voice)
        else:
            seconds = render_voice(text, plan.timbre, wav)
        if seconds <= max_seconds:
            return Clip(plan, tuple(sentences), seconds)
        sentences.pop()
    wav.unlink(missing_ok=True)
    return Clip(plan, (), 0.0)


def render(
    plans: Iterator[Plan],
    out: Path,
    *,
    heldout: int,
    train_seconds: float,
    max_seconds: float,
    workers: int,
    progress: Progress,
) -> Rendered:
    """Render plans in order, a few ahead per worker, until ``heldout`` clips and then
    ``train_seconds`` of train audio are done. A clip whose first sentence alone is too long is
    dropped (and counted); plans rendered past the target are deleted."""
    task = progress.add_task("rendering speech (s)", total=round(train_seconds + heldout * SECONDS_PER_CLIP))
    held: list[Clip] = []
    train: list[Clip] = []
    dropped: list[Clip] = []
    have = 0.0
    window: deque[Future[Clip]] = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            while True:
                while len(window) < 4 * workers and (plan := next(plans, None)) is not None:
                    window.append(pool.submit(render_clip, plan, out, max_seconds))
                if not window or (len(held) >= heldout and have >= train_seconds):
                    break
                clip = window.popleft().result()
                if not clip.sentences:
                    dropped.append(clip)
                elif len(held) < heldout:
                    held.append(clip)
                else:
                    train.append(clip)
                    have += clip.seconds
                progress.advance(task, clip.seconds)
        except BaseException:
            pool.shutdown(cancel_futures=True)  # one failed clip: do not render the rest
            raise
        for future in window:  # rendered ahead, past the target
            if not future.cancel():
                (out / future.result().plan.audio).unlink(missing_ok=True)
    return Rendered(held, train, dropped)


# --- output ----------------------------------------------------------------------------------


def row(clip: Clip) -> dict[str, Any]:
    """A transcription row, the contract of make_corpus.py's asr.jsonl plus voice/speed/source."""
    return {
        "id": clip.plan.id,
        "audio": clip.plan.audio,
        "transcript": clip.transcript,
        "query": ASR_QUERY,
        "style": "custom",
        "summary": clip.transcript,
        "voice": clip.plan.voice,
        "speed": clip.plan.speed,
        "source": clip.plan.source,
    }


def distinct_words(clips: Iterable[Clip]) -> int:
    return len({w.lower() for c in clips for w in WORD.findall(c.transcript)})


def hearing_info(clips: Rendered, mined: Mined, args: argparse.Namespace, seconds: dict[str, float]) -> dict[str, Any]:
    """What hearing.json records."""
    spoken = clips.spoken
    splits = {"train": clips.train, "heldout": clips.heldout}
    every = spoken + clips.dropped
    docs = [s for c in spoken for s in c.sentences if s.source == DOCSTRINGS]
    return {
        "generator": "recipes/mini/make_hearing.py",
        "seed": args.seed,
        "options": {
            "hours": args.hours,
            "heldout": args.heldout,
            "max_seconds": args.max_seconds,
            "pools_share": args.pools_share,
            "voice_family": args.voice_family,
            "name_pool": args.name_pool,
        },
        "rows": {name: len(split) for name, split in splits.items()},
        "hours": {name: round(sum(c.seconds for c in split) / 3600, 3) for name, split in splits.items()},
        "short_of_target": sum(c.seconds for c in clips.train) < args.hours * 3600,
        "sources": {
            name: dict(sorted(Counter(c.plan.source for c in split).items())) for name, split in splits.items()
        },
        "sentences": {name: sum(len(c.sentences) for c in split) for name, split in splits.items()},
        "distinct_words": {
            **{name: distinct_words(split) for name, split in splits.items()},
            "all": distinct_words(spoken),
        },
        "voices": dict(sorted(Counter(c.plan.voice for c in spoken).items())),
        "speeds": {
            "min": min((c.plan.speed for c in spoken), default=0),
            "mean": round(sum(c.plan.speed for c in spoken) / max(len(spoken), 1), 1),
            "max": max((c.plan.speed for c in spoken), default=0),
        },
        "clip_seconds": {
            "shortest": round(min((c.seconds for c in spoken), default=0.0), 2),
            "mean": round(sum(c.seconds for c in spoken) / max(len(spoken), 1), 2),
            "longest": round(max((c.seconds for c in spoken), default=0.0), 2),
        },
        "fit": {
            "clips_shortened": sum(c.shortened_by > 0 for c in every),
            "sentences_dropped": sum(c.shortened_by for c in every),
            "clips_dropped": len(clips.dropped),
        },
        "text": {
            "python_files": mined.files_listed,
            "files_read": mined.files_read,
            "files_unparsed": mined.files_unparsed,
            "packages": mined.packages_listed,
            "packages_read": mined.packages_read,
            "packages_in_corpus": len({s.origin for s in docs}),
            "docstring_sentences_mined": len(mined.sentences),
            "docstring_sentences_used": len(docs),
        },
        "wall_seconds": {name: round(s, 1) for name, s in seconds.items()},
    }


def words_wanted(hours: float, heldout: int, pools_share: float) -> int:
    """Docstring words to mine: the fastest speech's word rate over the docstring clips' audio,
    with a margin (a clip is never quite full)."""
    seconds = (hours * 3600 + heldout * SECONDS_PER_CLIP) * (1 - pools_share)
    return max(MIN_MINED_WORDS, round(seconds * SPEEDS[1] / 60 * MINE_MARGIN))


def build(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Mine, plan, render and write the corpus into ``out`` (new); returns hearing.json."""
    started = time.monotonic()
    (out / AUDIO_DIR).mkdir(parents=True)
    console = Console(stderr=True)
    with Progress(console=console) as progress:
        mined = mine(
            python_sources(source_roots()),
            random.Random(f"{args.seed}:text"),
            words_wanted(args.hours, args.heldout, args.pools_share),
            progress,
        )
        mined_at = time.monotonic()
        plans = plan_clips(
            mined.sentences,
            args.seed,
            args.pools_share,
            args.max_seconds,
            args.voice_family,
            name_pools(args.name_pool),
        )
        clips = render(
            plans,
            out,
            heldout=args.heldout,
            train_seconds=args.hours * 3600,
            max_seconds=args.max_seconds,
            workers=args.workers,
            progress=progress,
        )
    write_jsonl(out / "heldout.jsonl", [row(c) for c in clips.heldout])
    write_jsonl(out / "train.jsonl", [row(c) for c in clips.train])
    done = time.monotonic()
    seconds = {"mining": mined_at - started, "rendering": done - mined_at, "total": done - started}
    info = hearing_info(clips, mined, args, seconds)
    (out / "hearing.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def share(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--hours", type=positive_float, default=12.0, help="hours of train audio to render")
    parser.add_argument(
        "--heldout",
        type=int,
        default=100,
        help="held-out clips, none of whose sentences is in train",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-seconds",
        type=positive_float,
        default=MAX_SECONDS,
        help="longest clip (the student's audio window is 16 s)",
    )
    parser.add_argument(
        "--pools-share",
        type=share,
        default=POOLS_SHARE,
        help="share of clips spoken from the scenario pools (names, places, numbers as words)",
    )
    parser.add_argument("--workers", type=positive_int, default=2, help="espeak-ng processes at once")
    parser.add_argument(
        "--voice-family",
        choices=VOICE_FAMILIES,
        default="espeak",
        help="espeak: espeak-ng voices and speeds (default); train: voices.py's train family "
        "(espeak-ng and flite, perturbed)",
    )
    parser.add_argument(
        "--name-pool",
        choices=NAME_POOLS,
        default="mini",
        help="mini: the mini corpus's pools (default); large: the train part of the large pools",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    args = parser.parse_args(argv)
    if args.heldout < 0:
        parser.error(f"--heldout must be 0 or more, not {args.heldout}")
    if args.max_seconds <= FILL_MARGIN + 1:
        parser.error(f"--max-seconds must be more than {FILL_MARGIN + 1}, not {args.max_seconds}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("espeak-ng") is None:
        sys.exit("Error: espeak-ng is not installed (it renders the speech): apt-get install espeak-ng")
    if args.out.exists() and not args.overwrite:
        sys.exit(f"Error: '{args.out}' already exists; pass --overwrite to replace it.")
    validate_carriers()
    if args.voice_family == "train":
        unavailable = problems(family_bases("train"))
        if unavailable:
            sys.exit("Error: cannot render the train voice family:\n  " + "\n  ".join(unavailable))
    missing = missing_voices(VOICES)
    if missing:
        sys.exit(
            f"Error: espeak-ng cannot speak the voice(s) {', '.join(missing)} here; see "
            "'espeak-ng --voices=en' and the variants in espeak-ng-data/voices/!v, and edit "
            "VOICES in recipes/mini/make_hearing.py."
        )
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left over from an interrupted run
    try:
        info = build(tmp, args)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if args.out.exists():
        shutil.rmtree(args.out)
    tmp.rename(args.out)
    rows, hours, fit = info["rows"], info["hours"], info["fit"]
    print(
        f"wrote {rows['train']} train clips ({hours['train']:.2f} h) and {rows['heldout']} "
        f"held-out clips ({hours['heldout']:.2f} h) to {args.out}: "
        f"{info['distinct_words']['all']} distinct words, "
        f"longest clip {info['clip_seconds']['longest']} s, "
        f"{fit['clips_shortened']} clips shortened to fit ({fit['sentences_dropped']} sentences "
        f"left out), {fit['clips_dropped']} dropped, {info['wall_seconds']['total']:.0f} s",
        file=sys.stderr,
    )
    if info["short_of_target"]:
        print(
            f"Warning: only {hours['train']:.2f} of {args.hours} h of train audio: the docstring sentences ran out",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
