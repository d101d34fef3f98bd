"""What every stage that reads audio rows shares: the row checker, the long-audio plan and the
collator that decodes a batch's audio (and the checker of rows without audio, for a text LM).

One long-audio vocabulary (:class:`~speechsum_cli.data.long_audio.LongAudio`): ``error``
refuses and names the rows, ``chunk`` keeps the recording whole (consecutive windows in one
prompt), ``truncate`` keeps the first window, ``drop`` leaves the row out — the last two counted
and warned, never silent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechsum_cli.console import warn
from speechsum_cli.data.audio import iter_chunks, load_audio, probe
from speechsum_cli.data.dataset import require_columns, rows_with_empty, shown_ids
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.errors import AudioError, InputError

__all__ = [
    "shown_ids",
    "check_audio_rows",
    "check_text_rows",
    "long_audio_plan",
    "decode_row_audio",
    "AudioRowCollator",
]


def audio_seconds(audio: Any) -> float:
    """Duration of one row's undecoded audio; :class:`AudioError` if absent or unreadable."""
    if not audio or (isinstance(audio, dict) and not (audio.get("bytes") or audio.get("path"))):
        raise AudioError("no audio in the row")
    return probe(audio).duration


def check_audio_rows(
    ds: Any,
    source: Path,
    *,
    stage: str,
    required: list[str],
    nonempty: list[str],
    hint: str,
    extra_problems: Sequence[str] = (),
) -> list[float]:
    """Audio duration of every row; one error naming every bad row id and column.

    ``required`` columns must exist (``hint`` says how to get them); ``nonempty`` ones must not
    be blank; every row's ``audio`` must decode. ``extra_problems`` are a stage's own findings.
    """
    require_columns(ds, required, source, hint)
    problems = list(extra_problems) + empty_problems(ds, nonempty)
    durations: list[float] = []
    unreadable: list[str] = []
    first_reason = ""
    for row_id, audio in zip(ds["id"], ds["audio"]):
        try:
            durations.append(audio_seconds(audio))
        except AudioError as exc:
            unreadable.append(row_id)
            first_reason = first_reason or f"{row_id!r}: {exc}"
            durations.append(0.0)
    if unreadable:
        problems.append(
            f"{len(unreadable)} row(s) with unreadable 'audio': ids {shown_ids(unreadable)} (first: {first_reason})"
        )
    refuse_rows(problems, source, stage)
    return durations


def check_text_rows(ds: Any, source: Path, *, stage: str, required: list[str], hint: str) -> None:
    """Rows without audio (a text LM's): every ``required`` column present and non-blank; one
    error naming every missing column, or every bad row id and column."""
    require_columns(ds, required, source, hint)
    refuse_rows(empty_problems(ds, required), source, stage)


def empty_problems(ds: Any, columns: list[str]) -> list[str]:
    """One line per column with blank values, naming the rows."""
    problems = []
    for column in columns:
        empty = rows_with_empty(ds, column)
        if empty:
            problems.append(f"{len(empty)} row(s) with an empty '{column}': ids {shown_ids(empty)}")
    return problems


def refuse_rows(problems: Sequence[str], source: Path, stage: str) -> None:
    if problems:
        raise InputError(
            f"data '{source}' has rows {stage} cannot use: " + "; ".join(problems) + ". Fix or remove those rows."
        )


@dataclass
class LongAudioPlan:
    """Which rows a stage keeps, which of them it truncates, and the counts for speechsum.json."""

    keep: list[int]
    truncate: list[bool]
    """Per kept row."""
    counts: dict[str, int] = field(default_factory=dict)


def long_audio_plan(
    ids: Sequence[str], durations: Sequence[float], window: float, policy: LongAudio, source: Path
) -> LongAudioPlan:
    """Apply ``policy`` to the rows whose audio is longer than ``window`` seconds."""
    long_rows = [i for i, d in enumerate(durations) if d > window + 1e-6]
    counts = {
        "long_audio": len(long_rows),
        "dropped_long_audio": 0,
        "truncated_long_audio": 0,
        "chunked_long_audio": len(long_rows) if policy is LongAudio.chunk else 0,
    }
    if long_rows and policy is LongAudio.error:
        longest = max(durations[i] for i in long_rows)
        raise InputError(
            f"data '{source}' has {len(long_rows)} row(s) with audio longer than the model's "
            f"{window:g} s window (longest {longest:.1f} s): ids {shown_ids([ids[i] for i in long_rows])}. "
            "Pass --on-long-audio chunk (every window in one prompt; longer sequences), "
            "--on-long-audio truncate (the first window only; the text may then mention things "
            "the model never hears) or --on-long-audio drop (leave those rows out), or split the "
            "recordings first."
        )
    keep = list(range(len(ids)))
    truncate = [False] * len(ids)
    if long_rows and policy is LongAudio.drop:
        dropped = set(long_rows)
        keep = [i for i in keep if i not in dropped]
        counts["dropped_long_audio"] = len(long_rows)
        warn(
            f"dropped {len(long_rows)} row(s) with audio over the {window:g} s window "
            f"(ids {shown_ids([ids[i] for i in long_rows])})."
        )
    elif long_rows and policy is LongAudio.truncate:
        for i in long_rows:
            truncate[i] = True
        counts["truncated_long_audio"] = len(long_rows)
        warn(
            f"truncating {len(long_rows)} row(s) to the {window:g} s window "
            f"(ids {shown_ids([ids[i] for i in long_rows])})."
        )
    if not keep:
        raise InputError(f"data '{source}': no rows left after dropping long audio.")
    return LongAudioPlan(keep, [truncate[i] for i in keep], counts)


def decode_row_audio(
    row: dict[str, Any], sample_rate: int, window: float, *, chunk: bool
) -> np.ndarray | list[np.ndarray]:
    """One row's audio for the model: one wave, or with ``chunk`` a long recording's windows.

    Audio over one window that is not chunked is cut to the window: rows planned for
    truncation, or a sample or two of resampling slack (longer rows were refused or dropped).
    """
    try:
        wave = load_audio(row["audio"], sample_rate)
        limit = int(window * sample_rate)
        if chunk and not row.get("truncate") and len(wave) > limit:
            return [c.samples for c in iter_chunks(row["audio"], sample_rate, window)]
        return wave[:limit]
    except AudioError as exc:
        raise AudioError(f"row {row.get('id')!r}, column 'audio': {exc}") from None


@dataclass
class AudioRowCollator:
    """The base collator: decodes each row's audio (per the long-audio plan), then ``build``s.

    A stage subclasses it with its own ``build(rows, audios)``: the model inputs of its method.
    """

    lm: Any
    """The :class:`SpeechLM` being trained (its family, processor and config)."""
    window: float
    chunk: bool = False
    """Audio longer than the window becomes consecutive windows in one prompt."""
    dtype: Any = None
    """Floating model inputs are cast to this (the model's weights' dtype)."""

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        sr = self.lm.sampling_rate
        audios = [decode_row_audio(row, sr, self.window, chunk=self.chunk) for row in rows]
        return self.build(rows, audios)

    def build(self, rows: list[dict[str, Any]], audios: list[Any]) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self, prompts: list[Any]) -> dict[str, Any]:
        """The family's right-padded batch with labels, floating inputs in ``dtype``."""
        inputs = self.lm.encode(prompts, padding_side="right").inputs
        if self.dtype is not None:
            inputs = {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        return inputs
