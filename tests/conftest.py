"""Shared offline fixtures: espeak-ng speech, generated waves, tiny models of every family."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

SPEECH_TEXT = (
    "Good morning everyone. Alice Chen opened the budget review at nine. "
    "The team agreed to move the launch to March fourteenth and to hire three engineers. "
    "Bob will send the vendor contract to Northwind by Friday."
)


def espeak(text: str, path: Path, *, speed: int = 160) -> Path:
    """Render ``text`` to a 22.05 kHz mono wav with espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: apt-get install -y espeak-ng (see .ci/run)")
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(path), text], check=True)
    return path


def speech_of_duration(path: Path, seconds: float, *, workdir: Path) -> Path:
    """A wav of exactly ``seconds`` of espeak-ng speech (the phrase repeated, then trimmed)."""
    phrase = espeak(SPEECH_TEXT, workdir / f"_phrase_{path.stem}.wav")
    data, sr = sf.read(phrase, dtype="float32")
    n = int(round(seconds * sr))
    reps = int(np.ceil(n / len(data)))
    sf.write(path, np.tile(data, reps)[:n], sr)
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """About 12 s of espeak-ng speech."""
    return espeak(SPEECH_TEXT, tmp_path_factory.mktemp("speech") / "speech.wav")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """``tiny_models(model_type)`` -> path of a tiny random checkpoint (5 s window), built once."""
    from speechsum_cli.families import get_family

    built: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("tiny-models")

    def build(model_type: str) -> Path:
        if model_type not in built:
            built[model_type] = get_family(model_type).build_tiny(root / model_type, window_seconds=5.0)
        return built[model_type]

    return build
