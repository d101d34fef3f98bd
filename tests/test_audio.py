"""speechsum_cli.data.audio: decoding, mono mixing, resampling, block streaming, windows, errors.

Audio is generated (tones, noise, silences) or rendered with espeak-ng, written with soundfile,
and decoded back: these tests exercise libsndfile + soxr for real, offline, in a few seconds.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from speechsum_cli.data.audio import (
    AudioChunk,
    cut_search_samples,
    iter_chunks,
    load_audio,
    min_tail_samples,
    probe,
    stream_audio,
)
from speechsum_cli.errors import AudioError
from tests.conftest import speech_of_duration

SR = 16_000
"""Target rate (what the audio encoders expect)."""
WINDOW = 5.0
"""Window length of the tiny test models."""
WINDOW_SAMPLES = int(WINDOW * SR)

# (extension, soundfile format, subtype); MP3 is written by the bundled libsndfile (>= 1.1).
FORMATS = [
    ("wav", "WAV", "PCM_16"),
    ("flac", "FLAC", "PCM_16"),
    ("ogg", "OGG", "VORBIS"),
    ("mp3", "MP3", "MPEG_LAYER_III"),
]
SOURCE_RATES = [44_100, 22_050, 8_000]


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, sr: int = SR, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(amp * rng.standard_normal(int(round(seconds * sr))), -1, 1).astype(np.float32)


def dominant_frequency(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


def expected_length(frames: int, source_rate: int) -> int:
    return round(frames * SR / source_rate)


def offsets(chunks: list[AudioChunk]) -> list[int]:
    """Start sample of every chunk, from its ``start`` time."""
    return [round(c.start * SR) for c in chunks]


# --- decoding -------------------------------------------------------------------------------


def test_bundled_libsndfile_handles_every_tested_format():
    assert {fmt for _, fmt, _ in FORMATS} <= set(sf.available_formats())
    assert "MPEG_LAYER_III" in sf.available_subtypes("MP3")
    assert "VORBIS" in sf.available_subtypes("OGG")


@pytest.mark.parametrize("source_rate", SOURCE_RATES)
@pytest.mark.parametrize("ext,fmt,subtype", FORMATS, ids=[f[0] for f in FORMATS])
def test_decodes_format_to_16k_mono_keeping_duration_and_pitch(tmp_path, ext, fmt, subtype, source_rate):
    original = tone(440.0, 1.5, source_rate)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, original, source_rate, format=fmt, subtype=subtype)

    info = probe(path)
    assert (info.sample_rate, info.channels) == (source_rate, 1)
    audio = load_audio(path, SR)

    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - expected_length(len(original), source_rate)) <= 1
    assert abs(dominant_frequency(audio, SR) - 440.0) < 2.0
    # The tone is still there at (about) its amplitude: not attenuated, clipped or doubled.
    rms = float(np.sqrt(np.mean(np.square(audio[SR // 10 : -SR // 10]))))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.15)


@pytest.mark.parametrize("source_rate", [44_100, 8_000])
def test_streamed_resampling_equals_one_shot_resampling(tmp_path, source_rate):
    """Resampling block by block leaves no seams at block boundaries."""
    original = noise(3.3, source_rate)
    path = tmp_path / "noise.wav"
    sf.write(path, original, source_rate, subtype="FLOAT")

    audio = load_audio(path, SR)

    reference = soxr.resample(original, source_rate, SR)
    assert len(audio) == len(reference)
    np.testing.assert_allclose(audio, reference, atol=1e-5)


def test_16k_input_is_returned_unchanged(tmp_path):
    original = noise(2.5)
    path = tmp_path / "n.wav"
    sf.write(path, original, SR, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, SR), original)


def test_stereo_is_mixed_to_the_mean_of_the_channels(tmp_path):
    left, right = tone(440.0, 2.0, SR, amp=0.6), noise(2.0, amp=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")

    audio = load_audio(path, SR)

    assert probe(path).channels == 2
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-7)


def test_stereo_with_opposite_channels_mixes_to_silence_after_resampling(tmp_path):
    """Not 'take the first channel': L = -R must cancel, also on the resampling path."""
    left = tone(440.0, 2.0, 44_100)
    path = tmp_path / "opposite.flac"
    sf.write(path, np.stack([left, -left], axis=1), 44_100, subtype="PCM_16")

    audio = load_audio(path, SR)

    assert len(audio) == expected_length(len(left), 44_100)
    assert np.abs(audio).max() < 1e-3


def test_espeak_speech_keeps_its_duration(tmp_path):
    path = speech_of_duration(tmp_path / "speech.wav", 7.0, workdir=tmp_path)
    info = probe(path)
    assert info.sample_rate == 22_050
    audio = load_audio(path, SR)
    assert abs(len(audio) - expected_length(info.frames, info.sample_rate)) <= 1
    assert np.abs(audio).max() > 0.05  # speech, not silence


# --- block streaming --------------------------------------------------------------------------


@pytest.mark.parametrize("source_rate", [44_100, 22_050, 8_000, SR])
def test_stream_audio_yields_blocks_of_about_one_second(tmp_path, source_rate):
    original = noise(10.3, source_rate)
    path = tmp_path / "long.wav"
    sf.write(path, original, source_rate, subtype="PCM_16")

    blocks = list(stream_audio(path, SR))

    assert len(blocks) >= 10
    assert max(len(b) for b in blocks) <= 1.05 * SR
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert sum(len(b) for b in blocks) == expected_length(len(original), source_rate)


def test_stream_audio_block_seconds_sets_the_block_size(tmp_path):
    path = tmp_path / "n.wav"
    sf.write(path, noise(3.0), SR, subtype="PCM_16")
    assert [len(b) for b in stream_audio(path, SR, block_seconds=0.25)] == [SR // 4] * 12


@pytest.fixture(scope="module")
def three_minute_wav(tmp_path_factory) -> Path:
    """180 s of 44.1 kHz noise, written in blocks (decoded whole at 16 kHz: 11.5 MB of float32)."""
    path = tmp_path_factory.mktemp("long") / "three_minutes.wav"
    with sf.SoundFile(path, "w", 44_100, 1, "PCM_16") as fh:
        for second in range(180):
            fh.write(noise(1.0, 44_100, seed=second))
    return path


def traced_peak_bytes(consume) -> int:
    tracemalloc.start()
    try:
        consume()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streaming_memory_does_not_grow_with_the_file(three_minute_wav):
    whole = expected_length(180 * 44_100, 44_100) * 4

    def drain_blocks():
        for _ in stream_audio(three_minute_wav, SR):
            pass

    def drain_chunks():
        for _ in iter_chunks(three_minute_wav, SR, WINDOW):
            pass

    # A few seconds of audio at most, against 180 s for a whole-file decode.
    assert traced_peak_bytes(drain_blocks) < 2_000_000 < whole / 5
    assert traced_peak_bytes(drain_chunks) < 4_000_000 < whole / 2


# --- windows ----------------------------------------------------------------------------------


def check_partition(chunks: list[AudioChunk], source, window_samples: int = WINDOW_SAMPLES) -> None:
    """Every sample in exactly one chunk, in order, contiguous, none longer than the window."""
    audio = load_audio(source, SR)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.sample_rate == SR and c.samples.dtype == np.float32 for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), audio)
    assert offsets(chunks) == list(np.cumsum([0] + [len(c.samples) for c in chunks[:-1]]))
    for before, after in zip(chunks, chunks[1:]):
        assert after.start == pytest.approx(before.end, abs=1e-9)
    assert all(0 < len(c.samples) <= window_samples for c in chunks)


def test_speech_of_three_and_a_half_windows_gives_four_chunks(tmp_path):
    path = speech_of_duration(tmp_path / "speech.wav", 3.5 * WINDOW, workdir=tmp_path)

    chunks = list(iter_chunks(path, SR, WINDOW))

    assert len(chunks) == 4
    check_partition(chunks, path)
    assert chunks[-1].end == pytest.approx(3.5 * WINDOW, abs=1 / SR)


@pytest.mark.parametrize("seconds", [0.3, 4.99, 5.0, 5.01, 9.7, 10.0, 10.1, 23.4])
@pytest.mark.parametrize("source_rate", [SR, 44_100])
def test_chunks_partition_the_audio_at_any_length(tmp_path, seconds, source_rate):
    path = tmp_path / "n.wav"
    sf.write(path, noise(seconds, source_rate), source_rate, subtype="PCM_16")

    chunks = list(iter_chunks(path, SR, WINDOW))

    check_partition(chunks, path)
    # Cuts move back by at most the search zone, so the count lies between these two bounds.
    n = len(load_audio(path, SR))
    shortest = WINDOW_SAMPLES - cut_search_samples(WINDOW_SAMPLES, SR)
    assert max(1, -(-n // WINDOW_SAMPLES)) <= len(chunks) <= max(1, -(-n // shortest))


def test_cut_lands_in_a_silence_inside_the_search_zone(tmp_path):
    assert cut_search_samples(WINDOW_SAMPLES, SR) == int(0.5 * SR)  # the zone is [4.5 s, 5.0 s]
    audio = noise(8.0, amp=0.5)
    gap = slice(int(4.7 * SR), int(4.9 * SR))
    audio[gap] = 0.0
    path = tmp_path / "gap.wav"
    sf.write(path, audio, SR, subtype="PCM_16")

    chunks = list(iter_chunks(path, SR, WINDOW))

    cut = len(chunks[0].samples)
    assert gap.start <= cut < gap.stop, f"cut at {cut / SR:.3f} s, silence is 4.7-4.9 s"
    check_partition(chunks, path)


def test_silence_before_the_search_zone_is_not_used(tmp_path):
    """A pause 2 s before the boundary would waste window length: cut stays in the last 0.5 s."""
    audio = noise(8.0, amp=0.5)
    audio[int(3.0 * SR) : int(3.2 * SR)] = 0.0
    path = tmp_path / "early_gap.wav"
    sf.write(path, audio, SR, subtype="PCM_16")

    chunks = list(iter_chunks(path, SR, WINDOW))

    earliest = WINDOW_SAMPLES - cut_search_samples(WINDOW_SAMPLES, SR)
    assert earliest <= len(chunks[0].samples) <= WINDOW_SAMPLES


def test_tiny_tail_is_rebalanced_with_the_previous_chunk(tmp_path):
    # A stationary tone with a whole number of periods per 20 ms energy frame: all frames are
    # equally loud, so cuts go to the latest frame (4.99 s) and 10.1 s would leave a 0.12 s tail.
    period = tone(250.0, 1 / 250, SR)
    audio = np.tile(period, int(10.1 * 250))
    assert len(audio) == int(10.1 * SR)
    path = tmp_path / "tail.wav"
    sf.write(path, audio, SR, subtype="FLOAT")

    chunks = list(iter_chunks(path, SR, WINDOW))

    check_partition(chunks, path)
    lengths = [len(c.samples) for c in chunks]
    assert len(chunks) == 3
    assert min(lengths) >= min_tail_samples(WINDOW_SAMPLES, SR)
    assert lengths[0] > 4.9 * SR  # the first window is untouched
    assert abs(lengths[1] - lengths[2]) < 0.5 * SR  # the last two share what was left


def test_window_shorter_than_a_block_still_partitions(tmp_path):
    path = tmp_path / "n.wav"
    sf.write(path, noise(3.3), SR, subtype="PCM_16")

    chunks = list(iter_chunks(path, SR, 0.4))

    check_partition(chunks, path, window_samples=int(0.4 * SR))
    assert len(chunks) == 9


def test_path_and_bytes_source_is_decoded_from_the_bytes(tmp_path):
    path = speech_of_duration(tmp_path / "speech.flac", 12.0, workdir=tmp_path)
    source = {"path": "elsewhere/meeting.flac", "bytes": path.read_bytes()}  # path need not exist

    chunks = list(iter_chunks(source, SR, WINDOW))

    from_file = list(iter_chunks(path, SR, WINDOW))
    assert len(chunks) == len(from_file) == 3
    for a, b in zip(chunks, from_file):
        assert a.start == b.start
        np.testing.assert_array_equal(a.samples, b.samples)
    assert probe(source).name == "elsewhere/meeting.flac"


def test_path_only_dict_source_reads_the_file(tmp_path):
    path = tmp_path / "n.ogg"
    sf.write(path, tone(440.0, 1.0, 22_050), 22_050, format="OGG", subtype="VORBIS")
    from_dict = load_audio({"path": str(path), "bytes": None}, SR)
    np.testing.assert_array_equal(from_dict, load_audio(path, SR))


def test_non_positive_window_is_refused(tmp_path):
    path = tmp_path / "n.wav"
    sf.write(path, noise(1.0), SR)
    with pytest.raises(AudioError, match="window length must be positive, got 0"):
        list(iter_chunks(path, SR, 0))


# --- errors -----------------------------------------------------------------------------------


def _missing(d: Path) -> Path:
    return d / "missing.wav"


def _directory(d: Path) -> Path:
    (d / "folder.wav").mkdir()
    return d / "folder.wav"


def _empty(d: Path) -> Path:
    (d / "empty.wav").write_bytes(b"")
    return d / "empty.wav"


def _text(d: Path) -> Path:
    (d / "notes.wav").write_text("Meeting notes\nAlice: budget review at nine.\n" * 5)
    return d / "notes.wav"


def _non_ascii_text(d: Path) -> Path:
    # The 64-byte head ends in the middle of a two-byte character: still text, not "binary".
    data = ("Überprüfung " * 10).encode("utf-8")
    with pytest.raises(UnicodeDecodeError):
        data[:64].decode("utf-8")
    (d / "notiz.wav").write_bytes(data)
    return d / "notiz.wav"


def _zero_frames(d: Path) -> Path:
    sf.write(d / "silent.wav", np.zeros(0, dtype=np.float32), SR, subtype="PCM_16")
    return d / "silent.wav"


def _binary(d: Path) -> Path:
    (d / "noise.wav").write_bytes(b"\xff\x00\x81" + np.random.default_rng(0).bytes(997))
    return d / "noise.wav"


ERROR_CASES = {
    "missing": (_missing, ["audio file '{p}' does not exist. Check the path."]),
    "directory": (_directory, ["'{p}' is a directory, expected an audio file."]),
    "empty": (_empty, ["audio file '{p}' is empty (0 bytes)."]),
    "text": (
        _text,
        [
            "cannot decode '{p}': found text, not audio (starts with 'Meeting notes Alice:",
            "Expected audio in one of .wav, .flac",
        ],
    ),
    "non-ascii-text": (
        _non_ascii_text,
        ["cannot decode '{p}': found text, not audio (starts with 'Überprüfung Überprüfung"],
    ),
    "zero-frames": (_zero_frames, ["audio file '{p}' has no samples (zero length)."]),
    "binary": (
        _binary,
        ["cannot decode '{p}': found 64+ bytes starting with b'\\xff\\x00\\x81", "not a known audio format"],
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
@pytest.mark.parametrize("entry", ["probe", "load_audio", "iter_chunks"])
def test_bad_input_raises_audio_error_naming_file_and_content(tmp_path, case, entry):
    make, fragments = ERROR_CASES[case]
    path = make(tmp_path)
    call = {
        "probe": lambda: probe(path),
        "load_audio": lambda: load_audio(path, SR),
        "iter_chunks": lambda: list(iter_chunks(path, SR, WINDOW)),
    }[entry]

    with pytest.raises(AudioError) as excinfo:
        call()

    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment.format(p=path) in message


def test_bad_bytes_source_error_names_its_path():
    expected = r"cannot decode 'uploads/clip\.wav': found text, not audio"
    with pytest.raises(AudioError, match=expected):
        probe({"path": "uploads/clip.wav", "bytes": b"this is not audio at all"})


def test_dict_source_without_bytes_or_path_is_refused():
    with pytest.raises(AudioError, match="has neither 'bytes' nor 'path'"):
        probe({"path": None, "bytes": None})
