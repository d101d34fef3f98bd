"""Style presets and the long-audio combine prompt, shared by every stage (data: styles.json).

A preset turns ``--style NAME`` into the query the model sees; ``--query`` passes free text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from speechsum_cli.errors import InputError


@dataclass(frozen=True)
class Style:
    """One preset: its name, what it produces, the output format, and the query text."""

    name: str
    description: str
    format: str
    """bullets | paragraph | sentence | chapters — what style compliance checks against."""
    instruction: str
    max_bullets: int | None = None
    """Upper bound on bullets the instruction states, if any."""

    @property
    def query(self) -> str:
        """The full query a model is given for this preset."""
        return f"{self.instruction} {prompt_data()['faithfulness']}"


@lru_cache(maxsize=1)
def prompt_data() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("styles.json").read_text())


def styles() -> dict[str, Style]:
    """All presets by name, in file order."""
    return {name: Style(name=name, **spec) for name, spec in prompt_data()["styles"].items()}


def prompt_version() -> int:
    """styles.json's ``version``: bump it whenever a query or the combine prompt changes."""
    return int(prompt_data()["version"])


def get_style(name: str) -> Style:
    presets = styles()
    if name not in presets:
        raise InputError(
            f"--style '{name}' is not a preset. Choose one of: {', '.join(presets)}; or pass free text with --query."
        )
    return presets[name]


def resolve_query(style: str | None, query: str | None, default_style: str = "paragraph") -> tuple[str, str]:
    """(style name or 'custom', query text) from the --style/--query pair."""
    if style and query:
        raise InputError("--style and --query were both given; pass one (a preset, or free text).")
    if query is not None:
        if not query.strip():
            raise InputError("--query is empty; write the instruction, e.g. --query 'List the decisions'.")
        return "custom", query.strip()
    preset = get_style(style or default_style)
    return preset.name, preset.query


def combine_query(parts: list[tuple[float, float, str]], instruction: str) -> str:
    """The text-only prompt that merges partial summaries of consecutive windows."""
    lines = [f"{part_header(i, start, end)}\n{text}" for i, (start, end, text) in enumerate(parts, start=1)]
    return prompt_data()["combine"].format(parts="\n\n".join(lines), instruction=instruction)


def part_header(index: int, start: float, end: float) -> str:
    """How the combine prompt introduces one part: 'Part 2 (0:00:15-0:00:30):'."""
    return f"Part {index} ({format_clock(start)}-{format_clock(end)}):"


PART_HEADER = re.compile(r"\bPart \d+ \(\d+:\d{2}:\d{2}\s*-\s*\d+:\d{2}:\d{2}\)")
"""A :func:`part_header` anywhere in a text (an answer that copies the combine prompt's scaffold)."""


def echoes_combine_scaffold(text: str) -> bool:
    """Whether ``text`` copies the combine prompt's part headers instead of merging the parts."""
    return PART_HEADER.search(text) is not None


def format_clock(seconds: float) -> str:
    """0:05:07-style time stamp."""
    total = int(round(seconds))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"
