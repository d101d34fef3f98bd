"""Summaries of recordings of any length, the one way every stage makes them.

A recording's consecutive windows are read in one prompt, as the training stages read long rows,
as far as the LM's context allows (:mod:`speechsum_cli.inference.reading`). Only a recording that
takes several prompts is summarized part by part with the query (map), the partial summaries then
combined by the same model, text only (reduce; in rounds when they do not fit the context at once).
Nothing is truncated: every sample reaches the model. ``summarize`` and ``eval`` both call
:func:`summarize_recordings`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from speechsum_cli.console import plural, progress_bar, warn
from speechsum_cli.data.audio import (
    AudioChunk,
    AudioInfo,
    AudioSource,
    cut_search_seconds,
    iter_chunks,
)
from speechsum_cli.errors import InputError
from speechsum_cli.families.base import Prompt
from speechsum_cli.families.model import GenerationSettings, SpeechLM
from speechsum_cli.inference.reading import (
    CONTEXT_MARGIN_TOKENS,
    batched,
    group_audio,
    text_tokens,
    window_groups,
)
from speechsum_cli.prompts.styles import combine_query

REDUCE_FAN_IN = 12
"""At most this many partial summaries are combined in one prompt (quality, not only context)."""
SHOWN_PADDED = 5
"""Recordings named in the warning about audio too short for the encoder."""


@dataclass
class ChunkSummary:
    """The answer to one prompt of a recording: ``windows`` consecutive windows, start to end."""

    index: int
    start: float
    end: float
    summary: str
    windows: int = 1


@dataclass
class RecordingSummary:
    audio: str
    summary: str
    style: str
    query: str
    model: str
    duration: float
    """Seconds of audio in the file."""
    encoded_seconds: float = 0.0
    """Seconds of audio the model was given (equals duration: nothing is dropped)."""
    padded_seconds: float = 0.0
    """Seconds of silence added after audio shorter than the model's encoder reads, so it could
    be summarized (0.0: none; a warning on stderr says so)."""
    wall_time: float = 0.0
    real_time_factor: float = 0.0
    """wall_time / duration (< 1 is faster than real time)."""
    reduce_rounds: int = 0
    """Combine rounds (0: the recording was read in one prompt)."""
    chunks: list[ChunkSummary] = field(default_factory=list)
    """One per prompt the recording was read in."""
    generation: dict[str, Any] = field(default_factory=dict)
    """Where the run generated: in this process, or on a server (URL, model, requests sent)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_chunk_seconds(chunk_seconds: float | None) -> None:
    if chunk_seconds is not None and chunk_seconds <= 0:
        raise InputError(f"--chunk-seconds must be positive, got {chunk_seconds:g}.")


def resolve_window(model_window: float, chunk_seconds: float | None) -> float:
    """The window to cut at: the model's, or a shorter one the user asked for."""
    if chunk_seconds is None:
        return model_window
    if chunk_seconds > model_window + 1e-6:
        raise InputError(
            f"--chunk-seconds {chunk_seconds:g} exceeds the model's audio window of "
            f"{model_window:g} s; the encoder would truncate. Use at most {model_window:g}."
        )
    return chunk_seconds


def expected_chunks(info: AudioInfo, window: float) -> int:
    """Progress-bar estimate: cuts move back by up to the search zone to land in pauses."""
    return max(1, math.ceil(info.duration / (window - cut_search_seconds(window) / 2)))


def check_windows_per_prompt(windows: int | None) -> None:
    if windows is not None and windows < 1:
        raise InputError(f"--windows-per-prompt must be at least 1, got {windows}.")


def iter_all_groups(
    sources: list[AudioSource], sample_rate: int, window: float, per_prompt: int
) -> Iterator[tuple[int, list[AudioChunk]]]:
    """(source index, consecutive windows of one prompt), source after source; one prompt's
    windows in memory at a time."""
    for index, source in enumerate(sources):
        for group in window_groups(iter_chunks(source, sample_rate, window), per_prompt):
            yield index, group


def map_windows(
    lm: SpeechLM,
    sources: list[AudioSource],
    recordings: list[RecordingSummary],
    window: float,
    per_prompt: int,
    settings: GenerationSettings,
    batch_size: int,
    advance: Any,
) -> None:
    """Answer every prompt (``per_prompt`` consecutive windows) of every source, batched across
    sources, into ``recordings``; ``advance`` counts windows."""
    query_of = [r.query for r in recordings]
    groups = iter_all_groups(sources, lm.sampling_rate, window, per_prompt)
    for batch in batched(groups, batch_size):
        started = time.perf_counter()
        prompts = [Prompt(query=query_of[f], audio=group_audio(group)) for f, group in batch]
        texts, encoded = lm.generate_batch(prompts, settings)
        elapsed = time.perf_counter() - started
        seconds_of = [sum(chunk.duration for chunk in group) for _, group in batch]
        batch_seconds = sum(seconds_of) or 1.0
        rows = zip(batch, texts, encoded.audio_seconds, encoded.padded_seconds, seconds_of)
        for (f, group), text, seconds, padded, duration in rows:
            recording = recordings[f]
            end = group[-1].start + group[-1].duration
            recording.chunks.append(ChunkSummary(len(recording.chunks), group[0].start, end, text, len(group)))
            recording.encoded_seconds += seconds
            recording.padded_seconds += padded
            recording.wall_time += elapsed * duration / batch_seconds
            advance(len(group))


def group_parts(
    lm: SpeechLM, parts: list[tuple[float, float, str]], instruction: str, budget: int
) -> list[list[tuple[float, float, str]]]:
    """Pack consecutive parts into combine prompts of at most ``budget`` tokens and REDUCE_FAN_IN parts."""
    groups: list[list[tuple[float, float, str]]] = [[]]
    for part in parts:
        candidate = groups[-1] + [part]
        fits = text_tokens(lm, combine_query(candidate, instruction)) <= budget
        if groups[-1] and (len(candidate) > REDUCE_FAN_IN or not fits):
            groups.append([part])
        else:
            groups[-1] = candidate
    return groups


def reduce_parts(
    lm: SpeechLM,
    parts: list[tuple[float, float, str]],
    instruction: str,
    settings: GenerationSettings,
    batch_size: int,
) -> tuple[str, int]:
    """Combine partial summaries into one (text only), in rounds; returns (summary, rounds)."""
    budget = lm.context_length - settings.max_new_tokens - CONTEXT_MARGIN_TOKENS
    rounds = 0
    while len(parts) > 1:
        groups = group_parts(lm, parts, instruction, budget)
        if len(groups) == len(parts) and rounds > 0:
            raise InputError(
                f"partial summaries no longer fit the model's {lm.context_length}-token context two "
                "at a time; lower --max-new-tokens or use a model with a longer context."
            )
        texts: list[str] = []
        for chunk in batched(iter(groups), batch_size):
            texts += lm.generate([Prompt(query=combine_query(g, instruction)) for g in chunk], settings)
        parts = [(g[0][0], g[-1][1], text) for g, text in zip(groups, texts)]
        rounds += 1
    return parts[0][2], rounds


def warn_padded(lm: SpeechLM, recordings: list[RecordingSummary], what: str) -> None:
    """Say which recordings were padded with silence to the encoder's shortest clip."""
    padded = [r for r in recordings if r.padded_seconds > 0]
    if not padded:
        return
    shown = ", ".join(f"'{r.audio}' ({r.duration:.3f} s)" for r in padded[:SHOWN_PADDED])
    more = f" and {len(padded) - SHOWN_PADDED} more" if len(padded) > SHOWN_PADDED else ""
    warn(
        f"{plural(len(padded), what)} shorter than the {lm.min_clip_seconds:.3f} s the model's "
        f"audio encoder reads, so each was summarized with silence after it up to that length: "
        f"{shown}{more}."
    )


def summarize_recordings(
    lm: SpeechLM,
    sources: list[AudioSource],
    recordings: list[RecordingSummary],
    window: float,
    per_prompt: int,
    settings: GenerationSettings,
    batch_size: int,
    expected_windows: int,
    show_progress: bool,
    what: str = "recording",
) -> None:
    """Read every source in prompts of ``per_prompt`` windows, then reduce the parts of each
    recording that took several prompts, into ``recordings``.

    ``recordings[i]`` carries the query for ``sources[i]``; other stages (eval) call this with
    dataset rows, so every summary in the toolkit is made the same way. ``what`` names a
    recording in the warning about audio too short for the encoder (a 'row' for eval).
    """
    batch_size = lm.generation_batch(batch_size)
    with progress_bar("Summarizing windows", expected_windows, enabled=show_progress) as advance:
        map_windows(lm, sources, recordings, window, per_prompt, settings, batch_size, advance)
    warn_padded(lm, recordings, what)
    for recording in recordings:
        if len(recording.chunks) == 1:
            recording.summary = recording.chunks[0].summary
        else:
            reduce_started = time.perf_counter()
            parts = [(c.start, c.end, c.summary) for c in recording.chunks]
            recording.summary, recording.reduce_rounds = reduce_parts(lm, parts, recording.query, settings, batch_size)
            recording.wall_time += time.perf_counter() - reduce_started
        recording.real_time_factor = recording.wall_time / recording.duration
