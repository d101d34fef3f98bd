"""recipes/mini/make_hearing.py: short clips, transcripts that match the audio, a clean split."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from speechsum_cli.metrics.faithfulness import ORDINALS, SCALES, UNITS
from speechsum_cli.stages.evaluate import ASR_QUERY

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "recipes" / "mini"
SCRIPT = MINI / "make_hearing.py"
NUMBER_WORDS = set(UNITS) | set(ORDINALS) | set(SCALES)
MAX_SECONDS = 12.0
"""Tighter than the default, so clips are shortened to fit more often."""
COLUMNS = ("audio", "id", "query", "source", "speed", "style", "summary", "transcript", "voice")
SENTENCE = re.compile(r"(?<=[.!?]) ")


def make_hearing(out: Path, *extra: str, hash_seed: str = "1") -> subprocess.CompletedProcess[str]:
    """A tiny build; ``hash_seed`` sets PYTHONHASHSEED (set order must not change the corpus)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: apt-get install -y espeak-ng (see .ci/run)")
    small = ["--hours", "0.03", "--heldout", "4", "--max-seconds", str(MAX_SECONDS)]
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *small, *extra],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def hearing(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hearing") / "corpus"
    run = make_hearing(out)
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def rows(hearing) -> dict[str, list[dict[str, Any]]]:
    return {name: read_jsonl(hearing / f"{name}.jsonl") for name in ("train", "heldout")}


@pytest.fixture(scope="module")
def mh(request):
    """The script as a module (it imports pools and make_corpus from its own folder)."""
    sys.path.insert(0, str(MINI))
    request.addfinalizer(lambda: sys.path.remove(str(MINI)))
    import make_hearing

    return make_hearing


def test_rows_follow_the_transcription_contract(rows, hearing):
    info = json.loads((hearing / "hearing.json").read_text())
    assert len(rows["heldout"]) == 4 and len(rows["train"]) >= 5
    assert info["rows"] == {"train": len(rows["train"]), "heldout": 4} and info["seed"] == 0
    assert 0.03 <= info["hours"]["train"] < 0.06 and not info["short_of_target"]
    every = rows["train"] + rows["heldout"]
    assert len({r["id"] for r in every}) == len(every)
    for row in every:
        assert tuple(sorted(row)) == COLUMNS
        assert row["query"] == ASR_QUERY and row["style"] == "custom"
        assert row["summary"] == row["transcript"] and len(row["transcript"].split()) >= 6
        assert row["source"] in ("docstrings", "pools") and 140 <= row["speed"] <= 190
    assert info["text"]["packages_in_corpus"] >= 2 and info["distinct_words"]["all"] > 100


def test_every_clip_fits_the_window_and_is_speech(rows, hearing):
    durations = [sf.info(str(hearing / r["audio"])).duration for r in rows["train"] + rows["heldout"]]
    assert 1.0 < min(durations) and max(durations) <= MAX_SECONDS
    info = json.loads((hearing / "hearing.json").read_text())
    assert info["clip_seconds"]["longest"] == pytest.approx(max(durations), abs=0.01)
    assert sorted(p.name for p in (hearing / "audio").iterdir()) == sorted(
        Path(r["audio"]).name for r in rows["train"] + rows["heldout"]
    )


def test_each_wav_is_its_transcript_spoken(rows, hearing, tmp_path):
    """espeak-ng is deterministic: the transcript, voice and speed of a row give its wav again."""
    for row in rows["heldout"][:2] + rows["train"][:2]:
        again = tmp_path / "again.wav"
        subprocess.run(
            ["espeak-ng", "-v", row["voice"], "-s", str(row["speed"]), "-w", str(again), "--stdin"],
            input=row["transcript"].encode(),
            check=True,
        )
        written, _ = sf.read(hearing / row["audio"])
        assert np.array_equal(sf.read(again)[0], written), row["id"]


def test_heldout_sentences_never_occur_in_train(rows):
    def sentences(split: str) -> set[str]:
        return {s.lower() for r in rows[split] for s in SENTENCE.split(r["transcript"])}

    assert sentences("heldout") and not sentences("heldout") & sentences("train")


def test_pool_rows_speak_names_and_numbers_as_words(rows):
    pools = [r for r in rows["train"] + rows["heldout"] if r["source"] == "pools"]
    assert pools, "seed 0 draws pool clips among the first ones"
    said = {w.lower() for r in pools for w in re.findall(r"[A-Za-z]+", r["transcript"])}
    assert said & NUMBER_WORDS
    assert not any(ch.isdigit() for r in pools for ch in r["transcript"])


def test_same_seed_same_corpus_other_seed_other_corpus(hearing, tmp_path):
    again = tmp_path / "again"
    assert make_hearing(again, hash_seed="2").returncode == 0
    for name in ("train.jsonl", "heldout.jsonl"):
        assert (again / name).read_text() == (hearing / name).read_text()
    refused = make_hearing(again, "--seed", "1")
    assert refused.returncode == 1 and "already exists" in refused.stderr
    assert make_hearing(again, "--seed", "1", "--overwrite").returncode == 0
    assert (again / "train.jsonl").read_text() != (hearing / "train.jsonl").read_text()
    assert not (tmp_path / "again.tmp").exists()


@pytest.mark.parametrize(
    "sentence",
    [
        "Return the number of items in the given mapping.",
        "This method can be used to help troubleshoot a slow network connection.",
        "The HTTP server closes the connection when the client stops sending data.",
        "None of the values here are checked, so the caller isn't protected.",
    ],
)
def test_plain_sentences_are_kept(mh, sentence):
    assert mh.speakable(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "Set the value of max_length before calling the function again.",  # underscore
        "Returns the list of values [a, b] for the given key in order.",  # brackets
        "See the documentation at https www example org for more details.",  # URL
        "Call ``foo`` on every element of the input sequence in order.",  # backticks
        "Use :func:`load` to read the whole file into memory at once.",  # reST role
        "The tokenizer returns a DataFrame with one row for each input.",  # CamelCase
        "Pass the kwargs dict through to the underlying model constructor.",  # jargon
        "If the value is None the default timeout of the client is used.",  # code literal
        "The default of 30 seconds is used when no timeout is given here.",  # digits
        "Parameters of the function are x and y and z, e.g. the inputs.",  # abbreviation
        "Too short to say.",  # under 6 words
        "this sentence starts in lower case and so it is probably a fragment.",
        "This sentence has no full stop at the end and is probably a heading",
        "The DEFAULT_TIMEOUT constant is read once when the module is imported.",
        "The MAXIMUM value is read once when the module is imported here.",  # constant
        "The path is written as os.path.join of the two parts of the name.",  # dotted name
        " ".join(["word"] * 31) + ".",  # over 30 words
    ],
)
def test_code_like_sentences_are_rejected(mh, sentence):
    assert not mh.speakable(sentence)


def test_docstring_structure_is_dropped(mh):
    doc = (
        "Compute the mean of a list of numbers in one pass.\n\n"
        "Parameters\n----------\nvalues : list\n    The numbers to average over in one pass.\n\n"
        "Example::\n\n    >>> mean([1, 2])\n    1.5\n\n"
        ">>> print the result of the whole computation here now\n\n"
        "- a bullet item that reads like a plain English sentence.\n\n"
        "The result is a float even when every input is an integer."
    )
    assert list(mh.doc_sentences(doc)) == [
        "Compute the mean of a list of numbers in one pass.",
        "The result is a float even when every input is an integer.",
    ]


def test_carriers_share_no_phrase_with_the_held_out_scenarios(mh):
    mh.validate_carriers()
    copied = mh.held_out_templates()[0]  # a held-out phrasing passed off as a carrier
    with pytest.raises(mh.CarrierError, match="held-out scenario"):
        mh.validate_carriers((*mh.CARRIERS, copied))
