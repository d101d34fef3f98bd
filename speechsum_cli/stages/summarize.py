"""``summarize``: summaries of recordings of any length (map over windows, then reduce).

Audio longer than the model's window is split at quiet points into windows; every window is
summarized with the user's query (map), then the partial summaries are combined by the same model,
text only, in the requested style (reduce; in rounds when they do not fit the context at once).
Nothing is truncated: every sample of every file reaches the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speechsum_cli.console import progress_bar
from speechsum_cli.data.audio import (
    SUPPORTED_EXTENSIONS,
    AudioChunk,
    AudioSource,
    AudioInfo,
    cut_search_seconds,
    iter_chunks,
    probe,
)
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.errors import AudioError, InputError
from speechsum_cli.families import GenerationSettings, Prompt, SpeechLM, load
from speechsum_cli.prompts.styles import combine_query, resolve_query

LONG_AUDIO_CHOICES = (LongAudio.chunk, LongAudio.error)
"""A summary covers the whole recording: truncate and drop are not offered."""
REDUCE_FAN_IN = 12
"""At most this many partial summaries are combined in one prompt (quality, not only context)."""
CONTEXT_MARGIN_TOKENS = 32
"""Head-room kept free in the context when packing partial summaries into a combine prompt."""


@dataclass(frozen=True)
class SummarizeConfig:
    """Settings of one ``speechsum summarize`` run."""

    audio: tuple[Path, ...]
    """Audio files and/or directories (searched recursively for audio files)."""
    model: str
    """Checkpoint directory or hub id."""
    style: str | None = None
    """Style preset name; default 'paragraph' when neither style nor query is given."""
    query: str | None = None
    """Free-text instruction instead of a preset."""
    max_new_tokens: int = 512
    """Generation budget per window and per combine step."""
    temperature: float = 0.0
    """0 = greedy (reproducible)."""
    device: str = "auto"
    """auto | cpu | cuda[:N]."""
    dtype: str = "auto"
    """auto | float32 | bfloat16 | float16."""
    chunk_seconds: float | None = None
    """Window length; default and maximum: the model family's audio window."""
    on_long_audio: LongAudio = LongAudio.chunk
    """chunk (map-reduce) | error (refuse audio longer than one window)."""
    batch_size: int = 4
    """Windows generated together (across files)."""
    show_progress: bool = True
    """Progress bar on stderr for multi-window / multi-file work."""


@dataclass
class ChunkSummary:
    index: int
    start: float
    end: float
    summary: str


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
    wall_time: float = 0.0
    real_time_factor: float = 0.0
    """wall_time / duration (< 1 is faster than real time)."""
    reduce_rounds: int = 0
    chunks: list[ChunkSummary] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SummarizeResult:
    recordings: list[RecordingSummary]
    model: str
    window_seconds: float
    wall_time: float


def expand_inputs(paths: tuple[Path, ...]) -> list[Path]:
    """Files as given; directories replaced by the audio files under them (sorted)."""
    if not paths:
        raise InputError("no audio given. Pass one or more audio files or directories.")
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
            )
            if not found:
                raise InputError(
                    f"directory '{path}' contains no audio files ({', '.join(SUPPORTED_EXTENSIONS)})."
                )
            files.extend(found)
        else:
            files.append(path)
    return files


def check_inputs(files: list[Path]) -> list[AudioInfo]:
    """Probe every file before any model is loaded; report all bad files at once."""
    infos: list[AudioInfo] = []
    problems: list[str] = []
    for path in files:
        try:
            infos.append(probe(path))
        except AudioError as exc:
            problems.append(str(exc))
    if problems:
        if len(problems) == 1:
            raise AudioError(problems[0])
        raise AudioError(f"{len(problems)} audio inputs are unusable:\n  " + "\n  ".join(problems))
    return infos


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


def check_long_audio(infos: list[AudioInfo], window: float, policy: LongAudio | str) -> None:
    if policy not in LONG_AUDIO_CHOICES:
        allowed = " or ".join(p.value for p in LONG_AUDIO_CHOICES)
        raise InputError(f"--on-long-audio must be {allowed} for summarize (a summary covers the whole "
                         f"recording), got '{getattr(policy, 'value', policy)}'.")
    if policy == LongAudio.error:
        long = [i for i in infos if i.duration > window]
        if long:
            names = ", ".join(f"'{i.name}' ({i.duration:.1f} s)" for i in long)
            raise InputError(
                f"{len(long)} file(s) are longer than the {window:g} s window: {names}. "
                "Use --on-long-audio chunk to summarize them window by window."
            )


def expected_chunks(info: AudioInfo, window: float) -> int:
    """Progress-bar estimate: cuts move back by up to the search zone to land in pauses."""
    return max(1, math.ceil(info.duration / (window - cut_search_seconds(window) / 2)))


def iter_all_chunks(
    sources: list[AudioSource], sample_rate: int, window: float
) -> Iterator[tuple[int, AudioChunk]]:
    """(source index, window) pairs, source after source; one window in memory at a time."""
    for index, source in enumerate(sources):
        for chunk in iter_chunks(source, sample_rate, window):
            yield index, chunk


def batched(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def map_windows(
    lm: SpeechLM,
    sources: list[AudioSource],
    recordings: list[RecordingSummary],
    window: float,
    settings: GenerationSettings,
    batch_size: int,
    advance: Any,
) -> None:
    """Summarize every window of every source (batched across sources) into ``recordings``."""
    query_of = [r.query for r in recordings]
    for batch in batched(iter_all_chunks(sources, lm.sampling_rate, window), batch_size):
        started = time.perf_counter()
        prompts = [Prompt(query=query_of[f], audio=chunk.samples) for f, chunk in batch]
        texts, encoded = lm.generate_batch(prompts, settings)
        elapsed = time.perf_counter() - started
        batch_seconds = sum(chunk.duration for _, chunk in batch) or 1.0
        for (f, chunk), text, seconds in zip(batch, texts, encoded.audio_seconds):
            recording = recordings[f]
            recording.chunks.append(ChunkSummary(chunk.index, chunk.start, chunk.end, text))
            recording.encoded_seconds += seconds
            recording.wall_time += elapsed * chunk.duration / batch_seconds
            advance(1)


def prompt_tokens(lm: SpeechLM, query: str) -> int:
    return len(lm.encode([Prompt(query=query)]).inputs["input_ids"][0])


def group_parts(
    lm: SpeechLM, parts: list[tuple[float, float, str]], instruction: str, budget: int
) -> list[list[tuple[float, float, str]]]:
    """Pack consecutive parts into combine prompts of at most ``budget`` tokens and REDUCE_FAN_IN parts."""
    groups: list[list[tuple[float, float, str]]] = [[]]
    for part in parts:
        candidate = groups[-1] + [part]
        fits = prompt_tokens(lm, combine_query(candidate, instruction)) <= budget
        if groups[-1] and (len(candidate) > REDUCE_FAN_IN or not fits):
            groups.append([part])
        else:
            groups[-1] = candidate
    return groups


def reduce_parts(
    lm: SpeechLM, parts: list[tuple[float, float, str]], instruction: str, settings: GenerationSettings,
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


def summarize_recordings(
    lm: SpeechLM,
    sources: list[AudioSource],
    recordings: list[RecordingSummary],
    window: float,
    settings: GenerationSettings,
    batch_size: int,
    expected_windows: int,
    show_progress: bool,
) -> None:
    """Map every window of every source, then reduce each recording's parts, into ``recordings``.

    ``recordings[i]`` carries the query for ``sources[i]``; other stages (eval) call this with
    dataset rows, so every summary in the toolkit is made the same way.
    """
    with progress_bar("Summarizing windows", expected_windows, enabled=show_progress) as advance:
        map_windows(lm, sources, recordings, window, settings, batch_size, advance)
    for recording in recordings:
        if len(recording.chunks) == 1:
            recording.summary = recording.chunks[0].summary
        else:
            reduce_started = time.perf_counter()
            parts = [(c.start, c.end, c.summary) for c in recording.chunks]
            recording.summary, recording.reduce_rounds = reduce_parts(
                lm, parts, recording.query, settings, batch_size
            )
            recording.wall_time += time.perf_counter() - reduce_started
        recording.real_time_factor = recording.wall_time / recording.duration


def run(config: SummarizeConfig) -> SummarizeResult:
    """Summarize every recording in ``config.audio``; inputs are checked before loading the model."""
    started = time.perf_counter()
    style, query = resolve_query(config.style, config.query)
    if config.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {config.batch_size}.")
    files = expand_inputs(config.audio)
    infos = check_inputs(files)
    check_chunk_seconds(config.chunk_seconds)
    lm = load(config.model, device=config.device, dtype=config.dtype)
    window = resolve_window(lm.window_seconds, config.chunk_seconds)
    check_long_audio(infos, window, config.on_long_audio)
    settings = GenerationSettings(max_new_tokens=config.max_new_tokens, temperature=config.temperature)
    recordings = [
        RecordingSummary(str(path), "", style, query, config.model, info.duration)
        for path, info in zip(files, infos)
    ]
    total = sum(expected_chunks(info, window) for info in infos)
    show = config.show_progress and (total > 1 or len(files) > 1)
    summarize_recordings(lm, list(files), recordings, window, settings, config.batch_size, total, show)
    return SummarizeResult(recordings, config.model, window, time.perf_counter() - started)


def format_result(result: SummarizeResult, fmt: str) -> str:
    """text: the summary (a header per file when several); md: a section per file; json: everything."""
    import json

    recordings = result.recordings
    if fmt == "json":
        payload = [r.to_dict() for r in recordings]
        return json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, ensure_ascii=False)
    if fmt == "md":
        return "\n\n".join(f"## {Path(r.audio).name}\n\n{r.summary}" for r in recordings)
    if len(recordings) == 1:
        return recordings[0].summary
    return "\n\n".join(f"== {r.audio} ==\n{r.summary}" for r in recordings)
