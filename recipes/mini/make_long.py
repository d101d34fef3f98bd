"""The long corpus: meetings, briefings, calls and lectures of 20-150 s in a natural register.

    python recipes/mini/make_long.py OUT_DIR [--n-train 200] [--n-valid 40] [--n-test 60]
                                     [--seed 0] [--min-seconds 20] [--max-seconds 150]
                                     [--overwrite]

Why. The mini corpus (make_corpus.py) teaches recall, not listening: every item is one 10-16 s
window, read cleanly by one voice, with names from pools of 30. Here every item is longer than
the student's 16 s window, spoken the way people talk, by voices of three synthesizers, and
names people and places that valid/test items never share with training.

Content. An item is a meeting, a briefing, a call or a lecture (its ``setting``, also the word
in its queries) of 2-6 agenda segments; each segment is a scenario of scenarios.py with its slots
filled (train items use the ``split="train"`` kinds, valid items the ``"valid"`` kinds, test items
the ``"test"`` kinds; lectures use lecture kinds, the others the rest). Slot values are distinct
across the whole item; a lecture keeps one professor. Values come from the large pools of pools.py
(``large_pools``): train items from its train part, valid and test items from its held-out part,
which shares no name word with training. The segments are joined by transitions and passed
through the natural register (natural.py: fillers, repetitions, false starts, self-repairs,
asides; an opening and a closing). The transcript is exactly what is said.

Length. Each item draws a target duration uniformly over what 2-6 segments reach in its voice
(half a segment beyond either end, within [--min-seconds, --max-seconds]) and takes the segment
count whose typical duration is nearest, so every count gets about the same share. A draft whose
estimate is far off is not rendered; one whose audio misses the bounds is drafted again with a
segment more or fewer (at most MAX_ATTEMPTS drafts, counted in corpus.json as redrafts). With
2-6 segments the reachable range is about 25-140 s: the defaults never reach 150 s. Measured
for --n-train 200 --n-valid 40 --n-test 60 --seed 0: 300 items, 6.05 h, min 28.3 s, median
73.3 s, max 138.7 s; per 15 s bin from 30 s: 54 54 52 57 47 27 6 1 items (2 under 30 s); one
redraft; 244 s to render on 2 busy cores (load ~6), 0.86 GB of wavs.

References, composed from the segments' facts (never by a model), segments ranked by importance
(decisions + action items, then agenda order):

  bullets       one bullet per segment, its most important point, most important segment first
  key-points    the ranked segments' first points, then their second points: min(7, n + 2) bullets
  paragraph     each segment's one-sentence summary, in agenda order
  tldr          ONE sentence: the top segment's summary; "the SETTING also covered" the others' topics
  chapters      one '- Topic: summary' bullet per segment, in agenda order
  decisions     every segment's decisions (only items that have some)
  action-items  every segment's action items (only items that have some)

Each reference must pass its preset's style check (speechsum_cli.metrics.style.check_preset),
name no name or number that the transcript does not (unsupported_content) -- nor one that only a
disfluency said: it is also checked against the segments' clean text -- and have a word count
within ``word_bounds`` (n segments, k bullets or facts): bullets, key-points, decisions,
action-items 4k-24k words; chapters 6k-34k; paragraph 8n-32n; tldr 10-(24 + 6n). A template that
breaks this stops the run (TemplateError, naming the kinds). Queries: the preset's own query or
one of scenarios.QUERIES' free phrasings, with the item's setting word.

Voices (voices.py): train items speak with the train family (espeak-ng accents, variants, speeds
and pitches, and flite, all perturbed), valid items with festival (a synthesizer family and
speakers training never hears), test items with espeak-ng's default voice at 165 wpm, clean.

Writes OUT_DIR (atomically: built in OUT_DIR.tmp, then renamed):
  audio/ITEM.wav   mono speech at the synthesizer's rate
  train.jsonl      id (ITEM#0, ITEM#1: two styles per item), source_id, audio, transcript, query,
                   style, summary, voice
  asr.jsonl        id (ITEM#asr), source_id, audio, transcript, query (the eval ASR_QUERY),
                   style "custom", summary = transcript, voice
  valid.jsonl      id, audio, transcript, query, style, summary, voice (one row per item)
  test.jsonl       the same columns
  corpus.json      counts, seed, options, voices/kinds/settings per split, seconds per split,
                   durations (min/median/max, histogram, segments), disfluency counts by type,
                   redrafts, the pools' train and held-out sizes

The same --seed and options give the same corpus (every item draws from its own seeded RNGs).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from make_corpus import (
    AUDIO_DIR,
    WORD,
    Item,
    Rendered,
    Row,
    TemplateError,
    asr_rows,
    bullets,
    eval_rows,
    in_pool,
    positive_float,
    positive_int,
    queries,
    reference_problems,
    train_rows,
    validate_scenarios,
    write_atomically,
    write_jsonl,
)
from make_corpus import MAX_SECONDS as WINDOW_SECONDS
from natural import Distractor, Part, Rates, Spoken, fill, speak
from pools import PARTS, Pool, draw_raw, large_pools, pool_sizes, words
from scenarios import SCENARIOS, SPLITS, Scenario
from voices import SynthError, Voice, draw_voice, family_bases, problems, render

from speechsum_cli.metrics.faithfulness import unsupported_content

ROWS_PER_ITEM = {"train": 2, "valid": 1, "test": 1}
SEGMENTS = (2, 6)
"""Inclusive bounds on agenda segments per item."""
MIN_SECONDS, MAX_SECONDS = 20.0, 150.0
SETTING_WEIGHTS = {"meeting": 0.4, "briefing": 0.2, "call": 0.15, "lecture": 0.25}
SHARED_ROLES = frozenset({"prof"})
"""Slots that keep one value across an item's segments (a lecture has one professor)."""
REPAIRABLE_POOLS = frozenset(
    words("person weekday date city small medium percent minutes price count money big_money salary millions")
)
"""Pools whose values a speaker may say wrong and correct (whole slots only: not 'owner.first')."""
DISTRACTOR_TRIES = 8
STYLE_ORDER = (
    "bullets",
    "tldr",
    "paragraph",
    "key-points",
    "chapters",
    "decisions",
    "action-items",
)
MAX_KEY_POINTS = 7
MAX_ATTEMPTS = 12
"""Drafts per item before giving up on the duration bounds."""
ESTIMATE_OVERHEAD_WORDS = 14
"""Words of an item besides its segments (opening, closing), for the segment-count estimate."""
ESTIMATE_SLACK = 0.85
"""A draft whose estimated duration misses the bounds by more than this factor is not rendered."""
HISTOGRAM_EDGES = (0, 30, 45, 60, 75, 90, 105, 120, 135, 150)


@dataclass(frozen=True)
class LongConfig:
    """What the corpus is built from."""

    counts: dict[str, int]
    """Items per split: train, valid, test."""
    seed: int = 0
    min_seconds: float = MIN_SECONDS
    max_seconds: float = MAX_SECONDS
    rates: Rates = field(default_factory=Rates)
    """Disfluency rates of the natural register."""


@dataclass(frozen=True)
class Segment:
    """One agenda segment: a scenario, its filled slot values and the phrasing said."""

    scenario: Scenario
    values: dict[str, Any]
    phrasing: str

    @property
    def clean(self) -> str:
        return self.phrasing.format(**self.values)

    def fact(self, template: str) -> str:
        return template.format(**self.values)

    def facts(self, templates: tuple[str, ...]) -> list[str]:
        return [self.fact(t) for t in templates]

    @property
    def weight(self) -> int:
        return len(self.scenario.decisions) + len(self.scenario.actions)


@dataclass(frozen=True)
class LongItem:
    """A drafted item: what is said, by which voice, and its references and rows."""

    id: str
    split: str
    setting: str
    voice: Voice
    segments: tuple[Segment, ...]
    spoken: Spoken
    references: dict[str, str]
    rows: tuple[Row, ...]

    @property
    def clean(self) -> str:
        """The segments' own text, without any disfluency."""
        return " ".join(s.clean for s in self.segments)

    @property
    def audio(self) -> str:
        return f"{AUDIO_DIR}/{self.id}.wav"


@dataclass(frozen=True)
class RenderedLong:
    item: LongItem
    seconds: float
    attempts: int


# --- drafting ------------------------------------------------------------------------------------


def kinds_for(split: str, setting: str) -> list[Scenario]:
    """The scenario kinds an item of ``split`` and ``setting`` draws its segments from."""
    lecture = setting == "lecture"
    return [s for s in SCENARIOS if s.split == split and (s.setting == "lecture") == lecture]


def pick_scenarios(split: str, setting: str, n: int, rng: random.Random) -> list[Scenario]:
    """``n`` segments' scenarios: every kind once in a shuffled order before any repeats."""
    kinds = kinds_for(split, setting)
    chosen: list[Scenario] = []
    while len(chosen) < n:
        chosen += rng.sample(kinds, len(kinds))
    return chosen[:n]


def pools_for(split: str) -> dict[str, Pool]:
    """Train items name the large pools' train part; valid and test items the held-out part."""
    return large_pools("train" if split == "train" else "heldout")


def fill_segments(
    scenarios: list[Scenario], rng: random.Random, pools: dict[str, Pool]
) -> tuple[list[Segment], dict[str, list[Any]]]:
    """Slot values for every segment, distinct per pool across the item (SHARED_ROLES keep
    their first value); the segments and the raw values used, by pool."""
    taken: dict[str, list[Any]] = {}
    shared: dict[str, Any] = {}
    segments = []
    for scenario in scenarios:
        own = {k: v for k, v in scenario.slots.items() if k not in shared}
        ascending = tuple(s for s in scenario.ascending if s in own)
        raw = draw_raw(own, ascending, rng, pools, taken)
        raw.update({k: shared[k] for k in scenario.slots if k in shared})
        shared.update({k: raw[k] for k in scenario.slots if k in SHARED_ROLES})
        values = {slot: pools[scenario.slots[slot]].say(v) for slot, v in raw.items()}
        segments.append(Segment(scenario, values, rng.choice(scenario.transcripts)))
    return segments, taken


def stated_slots(segment: Segment, references: dict[str, str]) -> frozenset[str]:
    """The segment's whole slots of a repairable pool whose value some reference states: a
    repair of one of them tests that the correction, not the slip, was heard."""
    said = "\n".join(references.values())
    return frozenset(
        slot
        for slot, pool in segment.scenario.slots.items()
        if pool in REPAIRABLE_POOLS and re.search(rf"(?<![\w']){re.escape(str(segment.values[slot]))}(?![\w'])", said)
    )


def distractor_source(
    segment: Segment,
    pools: dict[str, Pool],
    taken: dict[str, list[Any]],
    clean: str,
    rng: random.Random,
) -> Distractor:
    """A wrong value for a slot of ``segment``: same pool, used nowhere in the item, and not
    supported by the item's clean text (so no reference can state it)."""

    def distractor(slot: str) -> str | None:
        pool_name = segment.scenario.slots[slot]
        pool = pools[pool_name].without(taken.get(pool_name, ()))
        if pool.size() == 0:
            return None
        for _ in range(DISTRACTOR_TRIES):
            raw = pool.draw(rng, 1)[0]
            said = str(pools[pool_name].say(raw))
            if unsupported_content(f"It was {said}.", clean).count:
                taken.setdefault(pool_name, []).append(raw)
                return said
        return None

    return distractor


def rank(segments: tuple[Segment, ...]) -> list[Segment]:
    """Most important first: more decisions and action items, then agenda order."""
    order = sorted(range(len(segments)), key=lambda k: (-segments[k].weight, k))
    return [segments[k] for k in order]


def join_and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def key_points(ranked: list[Segment]) -> list[str]:
    """The ranked segments' first points, then their second points, ...: min(7, n + 2)."""
    limit = min(MAX_KEY_POINTS, len(ranked) + 2)
    depth = max(len(s.scenario.points) for s in ranked)
    points = [s.fact(s.scenario.points[d]) for d in range(depth) for s in ranked if d < len(s.scenario.points)]
    return points[:limit]


def tldr(segments: tuple[Segment, ...], setting: str) -> str:
    """One sentence: the top segment's summary, then the topics of the others."""
    top = rank(segments)[0]
    others = [s.fact(s.scenario.topic) for s in segments if s is not top]
    return f"{top.fact(top.scenario.tldr).rstrip('.')}; the {setting} also covered {join_and(others)}."


def compose_references(segments: tuple[Segment, ...], setting: str) -> dict[str, str]:
    """Every style the item supports, composed from its segments' facts."""
    ranked = rank(segments)
    refs = {
        "bullets": bullets([s.fact(s.scenario.points[0]) for s in ranked]),
        "tldr": tldr(segments, setting),
        "paragraph": " ".join(s.fact(s.scenario.tldr) for s in segments),
        "key-points": bullets(key_points(ranked)),
        "chapters": bullets([f"{capitalized(s.fact(s.scenario.topic))}: {s.fact(s.scenario.tldr)}" for s in segments]),
    }
    decisions = [d for s in segments for d in s.facts(s.scenario.decisions)]
    actions = [a for s in segments for a in s.facts(s.scenario.actions)]
    if decisions:
        refs["decisions"] = bullets(decisions)
    if actions:
        refs["action-items"] = bullets(actions)
    return refs


def word_bounds(style: str, n_segments: int, summary: str) -> tuple[int, int]:
    """Inclusive word-count bounds of a reference (see the module docstring)."""
    k = len(summary.splitlines())
    if style == "paragraph":
        return 8 * n_segments, 32 * n_segments
    if style == "tldr":
        return 10, 24 + 6 * n_segments
    if style == "chapters":
        return 6 * k, 34 * k
    return 4 * k, 24 * k


def check_references(item: LongItem) -> None:
    """Every reference in style, within its word bounds, and stating nothing unsaid -- neither
    against the transcript nor against the clean text; a TemplateError names the kinds."""
    kinds = ", ".join(s.scenario.kind for s in item.segments)
    for style, summary in item.references.items():
        found = reference_problems(summary, style, item.spoken.text)
        found += [f"unsupported by the clean text: {x!r}" for x in unsupported_content(summary, item.clean).items]
        lo, hi = word_bounds(style, len(item.segments), summary)
        n = len(WORD.findall(summary))
        if not lo <= n <= hi:
            found.append(f"{n} words, expected {lo}-{hi}")
        if found:
            raise TemplateError(
                f"scenario kinds {kinds} ({item.id}), style {style!r}: {'; '.join(found)}\n"
                f"transcript: {item.spoken.text}\nreference: {summary}"
            )


def estimate_seconds(text: str, voice: Voice) -> float:
    return len(WORD.findall(text)) * 60.0 / voice.words_per_minute


def typical_seconds(n: float, voice: Voice, split: str, setting: str) -> float:
    """Roughly how long ``n`` segments of ``split``'s ``setting`` kinds last in ``voice``: their
    phrasings' mean word count, plus 12% for the natural register, plus opening and closing."""
    kinds = kinds_for(split, setting)
    words = statistics.mean(len(WORD.findall(t)) for s in kinds for t in s.transcripts) * 1.12
    return (n * words + ESTIMATE_OVERHEAD_WORDS) * 60.0 / voice.words_per_minute


def segment_count(
    voice: Voice,
    split: str,
    setting: str,
    allowed: tuple[int, int],
    cfg: LongConfig,
    rng: random.Random,
) -> int:
    """A segment count in ``allowed``: the one whose typical duration is nearest a target drawn
    uniformly over what ``allowed`` reaches (half a segment beyond either end), within
    [--min-seconds, --max-seconds]. So every count gets about the same share where all fit."""
    half = typical_seconds(1, voice, split, setting) - typical_seconds(0.5, voice, split, setting)
    lo = max(cfg.min_seconds, typical_seconds(allowed[0], voice, split, setting) - half)
    hi = min(cfg.max_seconds, typical_seconds(allowed[1], voice, split, setting) + half)
    target = rng.uniform(lo, max(lo, hi))
    counts = range(allowed[0], allowed[1] + 1)
    return min(counts, key=lambda n: abs(typical_seconds(n, voice, split, setting) - target))


def item_voice(split: str, index: int, seed: int) -> Voice:
    """The item's voice, from its own RNG (the same in every draft)."""
    return draw_voice(split, random.Random(f"{seed}:long:{split}:{index}:voice"))


def draft_long(split: str, index: int, cfg: LongConfig, attempt: int, allowed: tuple[int, int]) -> LongItem:
    """Draft ``attempt`` of item ``index`` of ``split``, from its own RNG, with a segment count
    in ``allowed``; its references are checked."""
    rng = random.Random(f"{cfg.seed}:long:{split}:{index}:{attempt}")
    voice = item_voice(split, index, cfg.seed)
    settings = list(SETTING_WEIGHTS)
    setting = rng.choices(settings, weights=[SETTING_WEIGHTS[s] for s in settings])[0]
    n = segment_count(voice, split, setting, allowed, cfg, rng)
    pools = pools_for(split)
    segments, taken = fill_segments(pick_scenarios(split, setting, n, rng), rng, pools)
    clean = " ".join(s.clean for s in segments)
    refs = compose_references(tuple(segments), setting)
    parts = [
        Part(
            fill(s.phrasing, s.values),
            stated_slots(s, refs),
            distractor_source(s, pools, taken, clean, rng),
        )
        for s in segments
    ]
    spoken = speak(parts, setting, rng, cfg.rates)
    available = [s for s in STYLE_ORDER if s in refs]
    rows = tuple(
        Row(style, rng.choice(queries(style, setting)), refs[style])
        for style in rng.sample(available, ROWS_PER_ITEM[split])
    )
    item = LongItem(f"{split}-{index:04d}-{setting}", split, setting, voice, tuple(segments), spoken, refs, rows)
    check_references(item)
    return item


def make_long_item(split: str, index: int, cfg: LongConfig, out: Path) -> RenderedLong:
    """Draft and render one item, drafting again with more or fewer segments until its audio
    is within the duration bounds (a draft whose estimate is far off is not rendered at all)."""
    allowed = SEGMENTS
    seen: list[str] = []
    for attempt in range(MAX_ATTEMPTS):
        item = draft_long(split, index, cfg, attempt, allowed)
        n = len(item.segments)
        estimate = estimate_seconds(item.spoken.text, item.voice)
        if ESTIMATE_SLACK * cfg.min_seconds <= estimate <= cfg.max_seconds / ESTIMATE_SLACK:
            seconds = render(item.spoken.text, item.voice, out / item.audio)
            if seconds > WINDOW_SECONDS and cfg.min_seconds <= seconds <= cfg.max_seconds:
                return RenderedLong(item, seconds, attempt + 1)
            (out / item.audio).unlink()  # a missed draft leaves no wav
        else:
            seconds = estimate  # clearly out of bounds: not worth rendering
        seen.append(f"{seconds:.1f} s with {n} segments")
        if seconds > cfg.max_seconds:
            allowed = (allowed[0], max(allowed[0], n - 1))
        else:
            allowed = (min(allowed[1], n + 1), allowed[1])
    raise TemplateError(
        f"{split} item {index}: none of {MAX_ATTEMPTS} drafts fits [{cfg.min_seconds}, "
        f"{cfg.max_seconds}] s with {SEGMENTS[0]}-{SEGMENTS[1]} segments "
        f"(voice {item_voice(split, index, cfg.seed).label}; got {', '.join(seen)}); widen "
        "--min-seconds/--max-seconds"
    )


# --- output --------------------------------------------------------------------------------------


def with_voice(rows: list[dict[str, str]], items: list[RenderedLong]) -> list[dict[str, str]]:
    """make_corpus's rows of these items, each with its item's voice label."""
    voice = {r.item.id: r.item.voice.label for r in items}
    return [{**row, "voice": voice[row.get("source_id", row["id"])]} for row in rows]


def as_corpus_items(items: list[RenderedLong]) -> list[Rendered]:
    """The items in make_corpus's shape, so its row builders write the same columns."""
    return [Rendered(Item(r.item.id, r.item.setting, r.item.spoken.text, r.item.rows), r.seconds) for r in items]


def files_for(rendered: dict[str, list[RenderedLong]]) -> dict[str, list[dict[str, str]]]:
    """Every jsonl file's rows."""
    corpus = {split: as_corpus_items(items) for split, items in rendered.items()}
    return {
        "train": with_voice(train_rows(corpus["train"]), rendered["train"]),
        "asr": with_voice(asr_rows(corpus["train"]), rendered["train"]),
        "valid": with_voice(eval_rows(corpus["valid"]), rendered["valid"]),
        "test": with_voice(eval_rows(corpus["test"]), rendered["test"]),
    }


def histogram(seconds: list[float]) -> dict[str, int]:
    """Item counts per duration bin (HISTOGRAM_EDGES; the last bin is open)."""
    edges = [*HISTOGRAM_EDGES, float("inf")]
    bins = list(pairwise(edges))
    names = [f"{a}-{b}" if b != float("inf") else f"{a}+" for a, b in bins]
    counts = Counter(next(n for n, (a, b) in zip(names, bins) if a <= s < b) for s in seconds)
    return {name: counts.get(name, 0) for name in names}


def duration_summary(seconds: list[float]) -> dict[str, Any]:
    if not seconds:
        return {"items": 0}
    return {
        "items": len(seconds),
        "min": round(min(seconds), 2),
        "median": round(statistics.median(seconds), 2),
        "max": round(max(seconds), 2),
        "histogram": histogram(seconds),
    }


def corpus_info(
    rendered: dict[str, list[RenderedLong]],
    files: dict[str, list[dict[str, str]]],
    cfg: LongConfig,
) -> dict[str, Any]:
    """What corpus.json records."""
    every = [r for items in rendered.values() for r in items]

    def per_split(fn):
        return {split: fn(items) for split, items in rendered.items()}

    return {
        "generator": "recipes/mini/make_long.py",
        "seed": cfg.seed,
        "options": {
            "min_seconds": cfg.min_seconds,
            "max_seconds": cfg.max_seconds,
            "segments": list(SEGMENTS),
            "rates": asdict(cfg.rates),
        },
        "items": per_split(len),
        "rows": {name: len(rows) for name, rows in files.items()},
        "settings": per_split(lambda items: dict(Counter(r.item.setting for r in items))),
        "scenario_kinds": per_split(lambda items: sorted({s.scenario.kind for r in items for s in r.item.segments})),
        "voices": per_split(lambda items: dict(sorted(Counter(r.item.voice.base for r in items).items()))),
        "synths": per_split(lambda items: dict(Counter(r.item.voice.synth for r in items))),
        "styles": {name: dict(Counter(row["style"] for row in files[name])) for name in ("train", "valid", "test")},
        "audio_seconds": {
            **per_split(lambda items: round(sum(r.seconds for r in items), 1)),
            "total": round(sum(r.seconds for r in every), 1),
        },
        "durations": {
            **per_split(lambda items: duration_summary([r.seconds for r in items])),
            "all": duration_summary([r.seconds for r in every]),
        },
        "segments": per_split(lambda items: dict(sorted(Counter(len(r.item.segments) for r in items).items()))),
        "disfluencies": per_split(lambda items: dict(sum((Counter(r.item.spoken.counts) for r in items), Counter()))),
        "redrafts": per_split(lambda items: sum(r.attempts - 1 for r in items)),
        "pools": {part: pool_sizes(part) for part in PARTS},
    }


def build(out: Path, cfg: LongConfig) -> dict[str, Any]:
    """Render and write the whole corpus into ``out`` (new); returns corpus.json's content."""
    (out / AUDIO_DIR).mkdir(parents=True)
    jobs = [(split, i) for split in SPLITS for i in range(cfg.counts.get(split, 0))]
    done = in_pool(jobs, lambda job: make_long_item(job[0], job[1], cfg, out), "rendering speech")
    rendered: dict[str, list[RenderedLong]] = {split: [] for split in SPLITS}
    for (split, _), item in zip(jobs, done):
        rendered[split].append(item)
    files = files_for(rendered)
    for name, rows in files.items():
        write_jsonl(out / f"{name}.jsonl", rows)
    info = corpus_info(rendered, files, cfg)
    (out / "corpus.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


# --- checks and CLI ------------------------------------------------------------------------------


def scenario_problems() -> list[str]:
    """What the long corpus needs of scenarios.py beyond validate_scenarios: a topic for every
    scenario, and lecture and other kinds in every split."""
    found = [f"{s.kind}: no topic" for s in SCENARIOS if not s.topic]
    for split in SPLITS:
        for setting in ("meeting", "lecture"):
            if not kinds_for(split, setting):
                kind = "lecture" if setting == "lecture" else "non-lecture"
                found.append(f"no {kind} scenario for the {split} split")
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--n-train", type=positive_int, default=200, help="train items (2 rows each)")
    parser.add_argument(
        "--n-valid",
        type=positive_int,
        default=40,
        help="validation items (festival voices, held-out kinds and names)",
    )
    parser.add_argument(
        "--n-test",
        type=positive_int,
        default=60,
        help="test items (espeak-ng default voice, test kinds, held-out names)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--min-seconds",
        type=positive_float,
        default=MIN_SECONDS,
        help=f"shortest item (more than the student's {WINDOW_SECONDS:g} s window)",
    )
    parser.add_argument("--max-seconds", type=positive_float, default=MAX_SECONDS, help="longest item")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    args = parser.parse_args(argv)
    if args.min_seconds <= WINDOW_SECONDS:
        parser.error(
            f"--min-seconds must be more than {WINDOW_SECONDS:g} (the student's window), not {args.min_seconds:g}"
        )
    if args.max_seconds < args.min_seconds + 10:
        parser.error(f"--max-seconds must be at least --min-seconds + 10, not {args.max_seconds:g}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out.exists() and not args.overwrite:
        sys.exit(f"Error: '{args.out}' already exists; pass --overwrite to replace it.")
    cfg = LongConfig(
        {"train": args.n_train, "valid": args.n_valid, "test": args.n_test},
        args.seed,
        args.min_seconds,
        args.max_seconds,
    )
    missing = problems(b for split in SPLITS for b in family_bases(split))
    found = scenario_problems()
    if missing or found:
        sys.exit("Error: cannot build the long corpus here:\n  " + "\n  ".join([*missing, *found]))
    started = time.monotonic()
    try:
        validate_scenarios(SCENARIOS)
        info = write_atomically(args.out, lambda tmp: build(tmp, cfg))
    except (TemplateError, SynthError) as e:
        sys.exit(f"Error: {e}")
    rows, d = info["rows"], info["durations"]["all"]
    print(
        f"wrote {rows['train']} train, {rows['asr']} transcription, {rows['valid']} valid and "
        f"{rows['test']} test rows to {args.out}: {info['audio_seconds']['total'] / 3600:.2f} h "
        f"of speech, items {d['min']}-{d['max']} s (median {d['median']}), "
        f"{time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
