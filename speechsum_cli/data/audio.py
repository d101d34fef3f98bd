"""Audio decoding, mono mixing, resampling and windowing with soundfile + soxr.

Everything here reads audio in blocks: memory holds one model window (plus a little look-ahead)
whatever the file's duration. ``datasets.Audio`` decoding is not used (it needs torchcodec).

An audio *source* is a path, or a ``{"path", "bytes"}`` dict as stored by ``datasets.Audio``
with ``decode=False``.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import soundfile as sf
import soxr

from speechsum_cli.errors import AudioError

AudioSource = Union[str, Path, dict[str, Any]]

SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
BLOCK_SECONDS = 1.0
"""How much audio is read from disk at a time."""
ENERGY_FRAME_SECONDS = 0.02
"""Frame length for the energy curve used to place window cuts."""
MAX_CUT_SEARCH_SECONDS = 2.0
"""A window cut is placed at the quietest frame in at most this much audio before the boundary."""
CUT_SEARCH_FRACTION = 0.1
"""...and in at most this fraction of the window."""
MIN_TAIL_SECONDS = 1.0
"""A last chunk shorter than this (or a quarter window) is rebalanced with the previous one."""


@dataclass(frozen=True)
class AudioInfo:
    """What the container header says about an audio source."""

    name: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class AudioChunk:
    """One window of a longer recording, mono float32 at the target rate."""

    index: int
    start: float
    """Start time in seconds from the beginning of the source."""
    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def end(self) -> float:
        return self.start + self.duration


def source_name(source: AudioSource) -> str:
    """A human-readable name for error messages."""
    if isinstance(source, dict):
        return str(source.get("path") or "<audio bytes>")
    return str(source)


def _describe_content(head: bytes) -> str:
    if not head:
        return "an empty file (0 bytes)"
    try:
        # Incremental decoding: a multi-byte character cut by the 64-byte head is not an error.
        text = codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        return f"{len(head)}+ bytes starting with {head[:12]!r}, not a known audio format"
    snippet = " ".join(text.split())[:40]
    return f"text, not audio (starts with {snippet!r})"


def _open(source: AudioSource) -> sf.SoundFile:
    """Open a source for block reading, raising :class:`AudioError` with what was found."""
    name = source_name(source)
    if isinstance(source, dict):
        data = source.get("bytes")
        if data:
            target: Any = io.BytesIO(data)
            head = bytes(data[:64])
        elif source.get("path"):
            return _open(source["path"])
        else:
            raise AudioError(f"audio entry {source!r} has neither 'bytes' nor 'path'.")
    else:
        path = Path(source)
        if not path.exists():
            raise AudioError(f"audio file '{name}' does not exist. Check the path.")
        if path.is_dir():
            raise AudioError(f"'{name}' is a directory, expected an audio file.")
        if path.stat().st_size == 0:
            raise AudioError(f"audio file '{name}' is empty (0 bytes).")
        with path.open("rb") as fh:
            head = fh.read(64)
        target = str(path)
    try:
        return sf.SoundFile(target)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(
            f"cannot decode '{name}': found {_describe_content(head)}. "
            f"Expected audio in one of {', '.join(SUPPORTED_EXTENSIONS)} ({exc})."
        ) from None


def probe(source: AudioSource) -> AudioInfo:
    """Read the header of ``source``; raise :class:`AudioError` if it is not usable audio."""
    with _open(source) as fh:
        info = AudioInfo(source_name(source), fh.samplerate, fh.channels, fh.frames)
    if info.frames <= 0:
        raise AudioError(f"audio file '{info.name}' has no samples (zero length).")
    return info


def stream_audio(source: AudioSource, sample_rate: int, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks of ``source`` resampled to ``sample_rate``.

    Memory is bounded by one block, whatever the file's duration.
    """
    info = probe(source)
    block = max(1, int(block_seconds * info.sample_rate))
    resampler = (
        soxr.ResampleStream(info.sample_rate, sample_rate, 1, dtype="float32")
        if info.sample_rate != sample_rate
        else None
    )
    with _open(source) as fh:
        for data in fh.blocks(blocksize=block, dtype="float32", always_2d=True):
            mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=False)
            if len(mono):
                yield np.ascontiguousarray(mono, dtype=np.float32)
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if len(tail):
                yield tail.astype(np.float32, copy=False)


def load_audio(source: AudioSource, sample_rate: int) -> np.ndarray:
    """Decode a whole source into one mono float32 array at ``sample_rate``.

    For clips that fit a model window (training rows); use :func:`iter_chunks` for recordings.
    """
    blocks = list(stream_audio(source, sample_rate))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def quietest_cut(samples: np.ndarray, lo: int, hi: int, sample_rate: int) -> int:
    """Index in ``[lo, hi]`` at the centre of the lowest-energy frame (``hi`` if the span is tiny)."""
    frame = max(1, int(ENERGY_FRAME_SECONDS * sample_rate))
    span = samples[lo:hi]
    n_frames = len(span) // frame
    if n_frames < 2:
        return hi
    energy = np.square(span[: n_frames * frame].reshape(n_frames, frame)).mean(axis=1)
    # Prefer the latest of equally quiet frames, so chunks stay as long as possible.
    best = n_frames - 1 - int(np.argmin(energy[::-1]))
    return lo + best * frame + frame // 2


def cut_search_seconds(window_seconds: float) -> float:
    """How far before a window boundary a cut may move to land in a pause."""
    return min(MAX_CUT_SEARCH_SECONDS, CUT_SEARCH_FRACTION * window_seconds)


def cut_search_samples(window_samples: int, sample_rate: int) -> int:
    """:func:`cut_search_seconds` in samples."""
    return int(cut_search_seconds(window_samples / sample_rate) * sample_rate)


def min_tail_samples(window_samples: int, sample_rate: int) -> int:
    """A last chunk shorter than this is merged with the one before and the pair split evenly."""
    return int(min(MIN_TAIL_SECONDS * sample_rate, window_samples / 4))


def iter_chunks(source: AudioSource, sample_rate: int, window_seconds: float) -> Iterator[AudioChunk]:
    """Split ``source`` into consecutive windows of at most ``window_seconds``.

    Each cut is moved back to the quietest point shortly before the boundary, so words are not
    split; a very short last piece is rebalanced with the one before it. Every sample lands in
    exactly one chunk: nothing is dropped or truncated. Memory holds about one window.
    """
    if window_seconds <= 0:
        raise AudioError(f"window length must be positive, got {window_seconds} s.")
    window = max(1, int(round(window_seconds * sample_rate)))
    search = cut_search_samples(window, sample_rate)
    buffer = np.zeros(0, dtype=np.float32)
    pending: np.ndarray | None = None  # held back one step so a tiny tail can be rebalanced
    emitted = 0
    index = 0
    for block in stream_audio(source, sample_rate):
        buffer = np.concatenate([buffer, block])
        while len(buffer) > window:
            cut = quietest_cut(buffer, window - search, window, sample_rate)
            if pending is not None:
                yield AudioChunk(index, emitted / sample_rate, pending, sample_rate)
                emitted += len(pending)
                index += 1
            pending, buffer = buffer[:cut].copy(), buffer[cut:]
    pieces = [p for p in (pending, buffer) if p is not None and len(p)]
    if len(pieces) == 2 and len(buffer) < min_tail_samples(window, sample_rate):
        merged = np.concatenate(pieces)
        middle = len(merged) // 2
        cut = quietest_cut(merged, middle - search // 2, middle + search // 2, sample_rate)
        pieces = [merged[:cut], merged[cut:]]
    for piece in pieces:
        yield AudioChunk(index, emitted / sample_rate, piece, sample_rate)
        emitted += len(piece)
        index += 1
