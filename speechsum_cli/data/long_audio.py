"""The one long-audio vocabulary of every stage that reads audio (light: the CLI imports it)."""

from __future__ import annotations

from enum import Enum


class LongAudio(str, Enum):
    """What a stage does with audio longer than the model's window (one vocabulary everywhere)."""

    error = "error"
    """Refuse, naming the rows (the default of every training stage: nothing lost silently)."""
    chunk = "chunk"
    """Keep it whole: consecutive windows fill one prompt (training), or map-reduce (summarize)."""
    truncate = "truncate"
    """Keep only the first window (counted and warned)."""
    drop = "drop"
    """Leave the row out (counted and warned)."""
