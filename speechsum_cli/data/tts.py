"""Text to speech for text-only corpora: ``synth --tts espeak`` (espeak-ng, offline, here) or
``synth --tts openai:MODEL`` (an endpoint's ``/audio/speech``: :mod:`speechsum_cli.llm.speech`,
which needs the LLM client, a layer up)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from speechsum_cli.errors import InputError

ESPEAK_WORDS_PER_MINUTE = 160
REMOTE_PREFIX = "openai:"
"""``--tts openai:MODEL``: speech through the same endpoint and key as the generator."""


def remote_model(engine: str | None) -> str | None:
    """'openai:tts-1' -> 'tts-1'; None for espeak, no TTS, or 'openai:' without a model."""
    if engine and engine.startswith(REMOTE_PREFIX) and engine[len(REMOTE_PREFIX) :].strip():
        return engine[len(REMOTE_PREFIX) :].strip()
    return None


def check_tts(engine: str) -> None:
    """Fail before any work when the engine cannot run here."""
    if engine == "espeak" and shutil.which("espeak-ng") is None:
        raise InputError(
            "--tts espeak needs the espeak-ng program: apt-get install espeak-ng "
            "(or brew install espeak-ng), then run the command again."
        )


def audio_name(row_id: str) -> str:
    """A file name for ``row_id`` that is safe on every filesystem and unique per id."""
    stem = re.sub(r"[^\w.-]+", "_", row_id)[:80]
    return f"{stem}-{hashlib.sha1(row_id.encode()).hexdigest()[:8]}.wav"


def speak(text: str, path: Path) -> Path:
    """Render ``text`` to a wav at ``path`` (written beside it first, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.wav")
    proc = subprocess.run(
        ["espeak-ng", "-s", str(ESPEAK_WORDS_PER_MINUTE), "-w", str(tmp), "--stdin"],
        input=text.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size <= 44:
        tmp.unlink(missing_ok=True)
        raise InputError(
            f"espeak-ng could not speak the transcript for '{path.stem}': "
            f"{proc.stderr.decode(errors='replace').strip()[:200]}"
        )
    tmp.replace(path)
    return path
