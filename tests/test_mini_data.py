"""The mini recipe's data plumbing: mix.py (training files from several corpora) and the Whisper
baseline's long-audio windows. Fast: no model is loaded."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

MINI = Path(__file__).resolve().parents[1] / "recipes" / "mini"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"mini_{name}", MINI / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_rows(path: Path, ids: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": i, "audio": f"audio/{i}.wav", "transcript": i}) + "\n" for i in ids))
    return path


def test_mix_keeps_order_ranges_and_repeats_with_unique_ids_and_absolute_audio(tmp_path):
    short = write_rows(tmp_path / "corpus" / "asr.jsonl", ["a", "b", "c"])
    long = write_rows(tmp_path / "long" / "train.jsonl", ["x", "y", "z", "w"])
    out = tmp_path / "mix.jsonl"
    proc = subprocess.run(
        [sys.executable, str(MINI / "mix.py"), str(out), f"{short}*2", f"{long}@1:3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c", "a~2", "b~2", "c~2", "y", "z"]
    assert rows[0]["audio"] == str((tmp_path / "corpus" / "audio" / "a.wav").resolve())
    assert rows[-1]["audio"] == str((tmp_path / "long" / "audio" / "z.wav").resolve())
    assert rows[3]["transcript"] == "a"  # a repeat is the same row


@pytest.mark.parametrize("spec", ["missing.jsonl", "{rows}@5:9", "{rows}*0"])
def test_mix_refuses_what_it_cannot_do_and_writes_nothing(spec, tmp_path):
    rows = write_rows(tmp_path / "rows.jsonl", ["a", "b"])
    out = tmp_path / "mix.jsonl"
    proc = subprocess.run(
        [sys.executable, str(MINI / "mix.py"), str(out), spec.format(rows=rows)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "Error:" in proc.stderr
    assert not out.exists()


def test_the_cascade_hears_every_sample_of_a_recording_longer_than_whispers_window(tmp_path):
    baselines = load_script("baselines")
    rate = baselines.WHISPER_RATE
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(int(71.3 * rate))).astype(np.float32)
    sf.write(tmp_path / "long.wav", wave, rate)
    sf.write(tmp_path / "short.wav", wave[: 5 * rate], rate)
    rows = [{"audio": str(tmp_path / "long.wav")}, {"audio": str(tmp_path / "short.wav")}]
    windows = baselines.whisper_windows(rows)
    assert [owner for owner, _ in windows] == [0, 0, 0, 1]
    assert all(len(w) <= baselines.WHISPER_WINDOW * rate for _, w in windows)
    heard = np.concatenate([w for owner, w in windows if owner == 0])
    assert np.allclose(heard, sf.read(tmp_path / "long.wav", dtype="float32")[0])
