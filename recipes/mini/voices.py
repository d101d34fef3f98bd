"""Speech synthesizers behind one interface, with perturbation: espeak-ng, flite and festival.

    render(text, voice, wav_path) -> seconds

A ``Voice`` names a synthesizer and its voice, how fast it speaks (espeak-ng: words per minute;
flite and festival: a duration stretch, > 1 is slower), espeak-ng's pitch, and a ``Perturbation``
applied afterwards in numpy + soxr with its own seed: a speed change (resampling, so tempo and
pitch move together, as in Kaldi's speed perturbation), white or pink noise at an SNR, and a gain.
A clean voice's wav is the synthesizer's own output. Sample rates are the synthesizers' own
(espeak-ng 22.05 kHz, flite 16 kHz, festival 16 or 32 kHz): the toolkit resamples.

Long texts: flite and festival are given at most CHUNK_WORDS words per call (whole sentences),
and the chunks are joined with PAUSE_SECONDS of silence; espeak-ng reads any length in one call.

Voice families, one per split of the long corpus (make_long.py), drawn per item by ``draw_voice``:

* ``train``: espeak-ng (its English languages and accents, each with a male/female variant or
  none, 140-200 words per minute, pitch 25-75) and flite's ``awb`` and ``rms``, every one
  perturbed (speed 0.9-1.1, noise at 10-30 dB SNR on three items in four, gain -6..+3 dB). flite's
  ``kal``, ``kal16`` and ``slt`` are left out: they are the speakers of festival's ``kal_diphone``
  and ``cmu_us_slt_arctic_hts``, which training must never hear.
* ``valid``: festival, both voices (a synthesizer family and speakers training never hears),
  stretch 0.9-1.15, clean.
* ``test``: espeak-ng's default voice at 165 words per minute, clean: the mini test set's voice.

A missing synthesizer or voice is a ``SynthError`` that names the apt package to install.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

Synth = Literal["espeak-ng", "flite", "festival"]
SYNTHS: tuple[Synth, ...] = ("espeak-ng", "flite", "festival")
BINARIES: dict[Synth, str] = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}
PACKAGES: dict[Synth, str] = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival"}
"""The apt package of each synthesizer."""
DEFAULT_VOICE = "default"
"""espeak-ng's default voice, rendered without ``-v`` (as make_corpus.speak renders it)."""
FESTIVAL_VOICES: dict[str, tuple[str, str]] = {
    "cmu_us_slt_arctic_hts": ("festvox-us-slt-hts", "hts"),
    "kal_diphone": ("festvox-kallpc16k", "diphone"),
}
"""festival voice -> (its apt package, how it stretches durations)."""
FLITE_VOICES = ("kal", "awb", "kal16", "rms", "slt")
ESPEAK_LANGUAGES = (
    "en-us",
    "en",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
"""'' = the language's own voice; others are espeak-ng-data/voices/!v variants (``en-us+f2``)."""
TRAIN_FLITE = ("awb", "rms")
"""flite voices of the train family (kal, kal16 and slt are festival's valid speakers)."""
ESPEAK_SHARE = 0.6
"""Share of train items spoken by espeak-ng (the rest by flite)."""
TRAIN_WPM = (140, 200)
TRAIN_PITCH = (25, 75)
TRAIN_STRETCH = (0.85, 1.2)
TRAIN_TEMPO = (0.9, 1.1)
TRAIN_SNR_DB = (10.0, 30.0)
NOISY_SHARE = 0.75
TRAIN_GAIN_DB = (-6.0, 3.0)
VALID_STRETCH = (0.9, 1.15)
TEST_WPM = 165
CHUNK_WORDS = 120
"""Most words flite or festival is given in one call."""
PAUSE_SECONDS = 0.3
"""Silence between chunks."""
PEAK = 0.99
"""A perturbed wav whose peak would pass this is scaled down to it (never clipped)."""
ACTIVE = 1e-4
"""Samples above this magnitude are speech, for the signal power behind an SNR."""
BASE_WPM = {"espeak-ng": 1.04, "flite": 170.0, "festival": 175.0}
"""For estimates only: espeak-ng speaks ~4% above its -s rate; flite and festival ~170-175 words
per minute at stretch 1 (measured on a 476-word text)."""
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class SynthError(Exception):
    """A synthesizer is missing, lacks a voice, or failed; the message says what to install."""


@dataclass(frozen=True)
class Perturbation:
    """What is done to the synthesizer's output, reproducibly (``seed``)."""

    tempo: float = 1.0
    """Speed factor: > 1 is faster and shorter (duration / tempo)."""
    snr_db: float | None = None
    """Noise at this signal-to-noise ratio in dB; None: no noise."""
    noise: Literal["white", "pink"] = "white"
    gain_db: float = 0.0
    seed: int = 0

    @property
    def clean(self) -> bool:
        return self.tempo == 1.0 and self.snr_db is None and self.gain_db == 0.0

    @property
    def label(self) -> str:
        parts = [f"tempo={self.tempo:.3f}"] if self.tempo != 1.0 else []
        if self.snr_db is not None:
            parts.append(f"noise={self.noise}@{self.snr_db:.1f}dB")
        if self.gain_db:
            parts.append(f"gain={self.gain_db:+.1f}dB")
        return ",".join(parts)


@dataclass(frozen=True)
class Voice:
    """A synthesizer voice, its speed and pitch, and the perturbation of its output."""

    synth: Synth
    name: str
    """espeak-ng: a language or language+variant (or DEFAULT_VOICE); flite: -voice; festival:
    the voice's name without ``voice_`` (cmu_us_slt_arctic_hts)."""
    wpm: int | None = None
    """espeak-ng's -s (words per minute); espeak-ng only."""
    stretch: float | None = None
    """flite's duration_stretch / festival's duration stretch (> 1 slower); not espeak-ng."""
    pitch: int | None = None
    """espeak-ng's -p (0-99); None: the voice's own."""
    perturbation: Perturbation = field(default_factory=Perturbation)

    def __post_init__(self) -> None:
        if self.synth not in SYNTHS:
            raise ValueError(f"synth must be one of {', '.join(SYNTHS)}, not {self.synth!r}")
        if self.synth == "espeak-ng" and (self.wpm is None or self.stretch is not None):
            raise ValueError("an espeak-ng voice takes wpm, not stretch")
        if self.synth != "espeak-ng" and (self.stretch is None or self.wpm or self.pitch):
            raise ValueError(f"a {self.synth} voice takes stretch, not wpm or pitch")
        if self.synth == "festival" and self.name not in FESTIVAL_VOICES:
            raise ValueError(f"festival voice must be one of {', '.join(FESTIVAL_VOICES)}")

    @property
    def base(self) -> str:
        """'flite:awb': the synthesizer and voice, without speed, pitch or perturbation."""
        return f"{self.synth}:{self.name}"

    @property
    def label(self) -> str:
        """Everything that makes the voice, in one string (the corpora's ``voice`` column)."""
        parts = [self.base]
        parts += [f"wpm={self.wpm}"] if self.wpm is not None else [f"stretch={self.stretch:.3f}"]
        parts += [f"pitch={self.pitch}"] if self.pitch is not None else []
        parts += [self.perturbation.label] if not self.perturbation.clean else []
        return ",".join(parts)

    @property
    def words_per_minute(self) -> float:
        """Roughly how fast this voice speaks, for duration estimates."""
        if self.synth == "espeak-ng":
            rate = BASE_WPM["espeak-ng"] * float(self.wpm or 0)
        else:
            rate = BASE_WPM[self.synth] / float(self.stretch or 1.0)
        return rate * self.perturbation.tempo


# --- synthesis ---------------------------------------------------------------------------------


def missing_message(synth: Synth) -> str:
    return f"{synth} is not installed (it renders speech here): apt-get install {PACKAGES[synth]}"


def run_synth(synth: Synth, argv: list[str], stdin: bytes | None = None) -> None:
    """Run one synthesizer command; a missing binary or a failure is a SynthError."""
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, check=False)
    except FileNotFoundError:
        raise SynthError(missing_message(synth)) from None
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip()[-400:]
        raise SynthError(f"{synth} failed (exit {proc.returncode}): {' '.join(argv[:4])} ...\n{tail}")


def festival_stretch(name: str, stretch: float) -> str:
    """The Scheme that sets a festival voice's duration stretch (HTS voices ignore
    Duration_Stretch: their engine takes a speed rate, -r)."""
    if FESTIVAL_VOICES[name][1] == "hts":
        return f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {1 / stretch:.4f}))))'
    return f"(Parameter.set 'Duration_Stretch {stretch:.4f})"


def synth_command(voice: Voice, text_file: Path, wav: Path) -> tuple[list[str], bytes | None]:
    """The command (and its stdin) that writes ``text_file``'s text as speech to ``wav``."""
    if voice.synth == "espeak-ng":
        argv = ["espeak-ng", *(["-v", voice.name] if voice.name != DEFAULT_VOICE else [])]
        argv += [
            "-s",
            str(voice.wpm),
            *(["-p", str(voice.pitch)] if voice.pitch is not None else []),
        ]
        return [*argv, "-w", str(wav), "--stdin"], text_file.read_bytes()
    if voice.synth == "flite":
        stretch = f"duration_stretch={voice.stretch:.4f}"
        return [
            "flite",
            "-voice",
            voice.name,
            "--setf",
            stretch,
            "-f",
            str(text_file),
            "-o",
            str(wav),
        ], None
    select = f"(voice_{voice.name})"
    stretch = festival_stretch(voice.name, float(voice.stretch or 1.0))
    return ["text2wave", "-eval", select, "-eval", stretch, str(text_file), "-o", str(wav)], None


def chunks(text: str, max_words: int) -> list[str]:
    """Whole sentences packed into chunks of at most ``max_words`` words (a longer sentence is
    a chunk of its own)."""
    out: list[str] = []
    for sentence in SENTENCE_END.split(text.strip()):
        if out and len(out[-1].split()) + len(sentence.split()) <= max_words:
            out[-1] = f"{out[-1]} {sentence}"
        else:
            out.append(sentence)
    return out


def synthesize_chunk(text: str, voice: Voice, folder: Path, index: int) -> Path:
    """One synthesizer call: ``text`` to a wav in ``folder``; an empty result is a SynthError."""
    text_file, wav = folder / f"chunk{index}.txt", folder / f"chunk{index}.wav"
    text_file.write_text(text + "\n")
    argv, stdin = synth_command(voice, text_file, wav)
    run_synth(voice.synth, argv, stdin)
    if not wav.is_file() or wav.stat().st_size <= 44:
        package = FESTIVAL_VOICES.get(voice.name, (PACKAGES[voice.synth],))[0]
        raise SynthError(
            f"{voice.synth} wrote no audio for voice {voice.name!r}: is it installed? apt-get install {package}"
        )
    return wav


def join_wavs(wavs: list[Path], out: Path) -> None:
    """Concatenate wavs of one sample rate with PAUSE_SECONDS of silence between them."""
    parts, rate = [], 0
    for i, wav in enumerate(wavs):
        audio, rate = sf.read(str(wav), dtype="float32")
        if i:
            parts.append(np.zeros(round(PAUSE_SECONDS * rate), dtype=np.float32))
        parts.append(audio)
    sf.write(str(out), np.concatenate(parts), rate, subtype="PCM_16")


def synthesize(text: str, voice: Voice, wav: Path) -> None:
    """The synthesizer's own speech of ``text`` in ``wav`` (no perturbation)."""
    pieces = [text] if voice.synth == "espeak-ng" else chunks(text, CHUNK_WORDS)
    with tempfile.TemporaryDirectory(prefix="voices-") as tmp:
        rendered = [synthesize_chunk(t, voice, Path(tmp), i) for i, t in enumerate(pieces)]
        if len(rendered) == 1:
            shutil.move(str(rendered[0]), str(wav))
        else:
            join_wavs(rendered, wav)


# --- perturbation ------------------------------------------------------------------------------


def change_speed(audio: np.ndarray, tempo: float) -> np.ndarray:
    """Play ``audio`` ``tempo`` times faster (resampled: duration / tempo, pitch moves too)."""
    if tempo == 1.0:
        return audio
    return soxr.resample(audio, tempo * 1000.0, 1000.0).astype(np.float32)


def noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power white or pink (1/f power) noise of ``n`` samples."""
    white = rng.standard_normal(n)
    if color == "pink":
        spectrum = np.fft.rfft(white)
        freqs = np.arange(len(spectrum), dtype=np.float64)
        freqs[0] = 1.0
        white = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    return (white / (np.sqrt(np.mean(white**2)) or 1.0)).astype(np.float32)


def speech_power(audio: np.ndarray) -> float:
    """Mean power of the speech samples (magnitude above ACTIVE; all samples if none is)."""
    active = audio[np.abs(audio) > ACTIVE]
    return float(np.mean((active if active.size else audio) ** 2))


def perturb(audio: np.ndarray, p: Perturbation) -> np.ndarray:
    """Speed, then noise at ``p.snr_db``, then gain; scaled down to PEAK if it would clip."""
    out = change_speed(audio.astype(np.float32), p.tempo)
    if p.snr_db is not None:
        scale = np.sqrt(speech_power(out) / 10 ** (p.snr_db / 10))
        out = out + scale * noise(len(out), p.noise, np.random.default_rng(p.seed))
    out = out * np.float32(10 ** (p.gain_db / 20))
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    return out * np.float32(PEAK / peak) if peak > PEAK else out


def render(text: str, voice: Voice, wav_path: Path) -> float:
    """Speak ``text`` with ``voice`` into ``wav_path`` (mono); its duration in seconds."""
    wav_path = Path(wav_path)
    synthesize(text, voice, wav_path)
    if voice.perturbation.clean:
        return sf.info(str(wav_path)).duration
    audio, rate = sf.read(str(wav_path), dtype="float32")
    out = perturb(audio, voice.perturbation)
    sf.write(str(wav_path), out, rate, subtype="PCM_16")
    return len(out) / rate


# --- families ----------------------------------------------------------------------------------


def train_perturbation(rng: random.Random) -> Perturbation:
    """A random speed, noise and gain for a train voice."""
    noisy = rng.random() < NOISY_SHARE
    return Perturbation(
        tempo=round(rng.uniform(*TRAIN_TEMPO), 3),
        snr_db=round(rng.uniform(*TRAIN_SNR_DB), 1) if noisy else None,
        noise=rng.choice(("white", "pink")),
        gain_db=round(rng.uniform(*TRAIN_GAIN_DB), 1),
        seed=rng.getrandbits(32),
    )


def espeak_name(language: str, variant: str) -> str:
    return f"{language}+{variant}" if variant else language


def draw_voice(family: str, rng: random.Random) -> Voice:
    """One voice of ``family`` ('train', 'valid' or 'test'), drawn with ``rng``."""
    if family == "test":
        return Voice("espeak-ng", DEFAULT_VOICE, wpm=TEST_WPM)
    if family == "valid":
        name = rng.choice(sorted(FESTIVAL_VOICES))
        return Voice("festival", name, stretch=round(rng.uniform(*VALID_STRETCH), 3))
    if family != "train":
        raise ValueError(f"voice family must be train, valid or test, not {family!r}")
    if rng.random() < ESPEAK_SHARE:
        name = espeak_name(rng.choice(ESPEAK_LANGUAGES), rng.choice(ESPEAK_VARIANTS))
        wpm, pitch = rng.randint(*TRAIN_WPM), rng.randint(*TRAIN_PITCH)
        return Voice("espeak-ng", name, wpm=wpm, pitch=pitch, perturbation=train_perturbation(rng))
    name = rng.choice(TRAIN_FLITE)
    stretch = round(rng.uniform(*TRAIN_STRETCH), 3)
    return Voice("flite", name, stretch=stretch, perturbation=train_perturbation(rng))


def family_bases(family: str) -> list[str]:
    """Every 'synth:name' a family can draw."""
    if family == "test":
        return [f"espeak-ng:{DEFAULT_VOICE}"]
    if family == "valid":
        return [f"festival:{name}" for name in sorted(FESTIVAL_VOICES)]
    espeak = [f"espeak-ng:{espeak_name(lang, var)}" for lang in ESPEAK_LANGUAGES for var in ESPEAK_VARIANTS]
    return espeak + [f"flite:{name}" for name in TRAIN_FLITE]


# --- availability ------------------------------------------------------------------------------


def voice_sample(voice: str) -> bytes:
    """espeak-ng's wav of one short word in ``voice``; empty when it has no such voice."""
    proc = subprocess.run(["espeak-ng", "-v", voice, "--stdout", "hearing"], capture_output=True, check=False)
    return proc.stdout if proc.returncode == 0 else b""


def missing_voices(voices: Iterable[str]) -> list[str]:
    """The voices espeak-ng cannot speak here. An unknown language fails, but an unknown variant
    (``en+nosuch``) falls back to the plain language, so a variant must sound different."""
    missing = []
    for voice in voices:
        sample = voice_sample(voice)
        language = voice.split("+")[0]
        if len(sample) <= 44 or ("+" in voice and sample == voice_sample(language)):
            missing.append(voice)
    return missing


def flite_voices() -> set[str]:
    """The voices this flite has (``flite -lv``)."""
    proc = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False)
    return set(proc.stdout.split(":", 1)[-1].split())


def festival_has(name: str) -> bool:
    """Whether festival speaks a word in voice ``name`` (a missing voice writes nothing)."""
    voice = Voice("festival", name, stretch=1.0)
    with tempfile.TemporaryDirectory(prefix="voices-") as tmp:
        try:
            synthesize_chunk("Hello.", voice, Path(tmp), 0)
        except SynthError:
            return False
    return True


def espeak_problems(names: list[str]) -> list[str]:
    """Missing espeak-ng languages and variants (each checked once, a variant on 'en')."""
    languages = sorted({n.split("+")[0] for n in names if n != DEFAULT_VOICE})
    variants = sorted({n.split("+")[1] for n in names if "+" in n})
    missing = missing_voices([*languages, *(f"en+{v}" for v in variants)])
    return [
        f"espeak-ng has no voice {voice!r}: see 'espeak-ng --voices=en' and edit "
        "ESPEAK_LANGUAGES / ESPEAK_VARIANTS in recipes/mini/voices.py"
        for voice in missing
    ]


def problems(bases: Iterable[str]) -> list[str]:
    """Why some of these 'synth:name' voices cannot be rendered here (empty: all can)."""
    by_synth: dict[str, list[str]] = {}
    for base in bases:
        synth, name = base.split(":", 1)
        by_synth.setdefault(synth, []).append(name)
    found: list[str] = []
    for synth, names in by_synth.items():
        if shutil.which(BINARIES[synth]) is None:  # type: ignore[index]
            found.append(missing_message(synth))  # type: ignore[arg-type]
        elif synth == "espeak-ng":
            found += espeak_problems(names)
        elif synth == "flite":
            have = flite_voices()
            found += [
                f"flite has no voice {n!r} (flite -lv lists {', '.join(sorted(have))})"
                for n in sorted(set(names))
                if n not in have
            ]
        else:
            found += [
                f"festival has no voice {n!r}: apt-get install {FESTIVAL_VOICES[n][0]}"
                for n in sorted(set(names))
                if not festival_has(n)
            ]
    return found
