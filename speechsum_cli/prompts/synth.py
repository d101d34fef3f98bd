"""Synth prompts and the facet taxonomy (data: synth.json, versioned; styles from styles.json).

A row's facets — style preset, length limit, focus, audience, tone — are drawn with a seeded RNG
per source recording, distinct within that recording, and recorded in the output row.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from speechsum_cli.prompts.styles import prompt_version as styles_version
from speechsum_cli.prompts.styles import styles

MAX_DRAW_TRIES = 64
"""Redraws before accepting a repeated facet combination (tiny taxonomies, huge --per-audio)."""


@dataclass(frozen=True)
class Facets:
    """What one synthetic (query, summary) pair is asked to be."""

    style: str
    length: str
    focus: str
    audience: str
    tone: str

    def as_row(self) -> dict[str, str]:
        return asdict(self)


@lru_cache(maxsize=1)
def synth_data() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("synth.json").read_text())


def synth_prompt_version() -> str:
    """Recorded per row and part of every cache key: synth.json's version + the styles' version."""
    return f"{synth_data()['version']}+styles-{styles_version()}"


def synth_schema() -> dict[str, Any]:
    return synth_data()["schema"]


def draw_facets(seed: int, source_id: str, count: int) -> list[Facets]:
    """``count`` facet sets for one recording: styles spread evenly, combinations distinct."""
    data = synth_data()
    presets = styles()
    rng = random.Random(f"{seed}:{source_id}")
    order: list[str] = []
    seen: set[Facets] = set()
    drawn: list[Facets] = []
    for _ in range(count):
        if not order:  # every preset once before any repeats, in a fresh random order
            order = list(presets)
            rng.shuffle(order)
        style = order.pop()
        for _ in range(MAX_DRAW_TRIES):
            facets = Facets(
                style=style,
                length=rng.choice(data["lengths"][presets[style].format]),
                focus=rng.choice(data["focus"]),
                audience=rng.choice(data["audiences"]),
                tone=rng.choice(data["tones"]),
            )
            if facets not in seen:
                break
        seen.add(facets)
        drawn.append(facets)
    return drawn


def synth_messages(transcript: str, facets: Facets) -> list[dict[str, str]]:
    """The chat messages that ask the generator for one pair."""
    data = synth_data()
    preset = styles()[facets.style]
    user = data["user"].format(
        transcript=transcript.strip(),
        style_description=preset.description,
        style_instruction=preset.instruction,
        length=facets.length,
        focus=facets.focus,
        audience=facets.audience,
        tone=facets.tone,
    )
    return [{"role": "system", "content": data["system"]}, {"role": "user", "content": user}]
