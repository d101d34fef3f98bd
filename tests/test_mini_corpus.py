"""recipes/mini/make_corpus.py: faithful, in-style references; a split by content; short audio."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from speechsum_cli.metrics.faithfulness import ORDINALS, SCALES, UNITS, unsupported_content
from speechsum_cli.metrics.style import check_preset
from speechsum_cli.stages.evaluate import ASR_QUERY

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "recipes" / "mini"
SCRIPT = MINI / "make_corpus.py"
PRESETS = {"bullets", "tldr", "paragraph", "action-items", "decisions", "key-points"}
NUMBER_WORDS = set(UNITS) | set(ORDINALS) | set(SCALES) | {"point"}


def make_corpus(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: apt-get install -y espeak-ng (see .ci/run)")
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--n-train", "12", "--n-test", "4", *extra],
        check=False,
        capture_output=True,
        text=True,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mini") / "corpus"
    run = make_corpus(out)
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def rows(corpus) -> dict[str, list[dict[str, Any]]]:
    return {name: read_jsonl(corpus / f"{name}.jsonl") for name in ("train", "asr", "test")}


def kind(row: dict[str, Any]) -> str:
    """The scenario kind in an item id: 'train-0003-budget-review#1' -> 'budget-review'."""
    return row["id"].split("#")[0].split("-", 2)[2]


def template_runs(transcript: str, n: int = 7) -> set[tuple[str, ...]]:
    """Word n-grams with names and numbers masked: what a shared template would have in common."""
    masked: list[str] = []
    for word in re.findall(r"[\w']+", transcript):
        token = "#" if word.lower() in NUMBER_WORDS else "N" if word[0].isupper() else word.lower()
        if not (masked and token in ("#", "N") and masked[-1] == token):
            masked.append(token)
    return {tuple(masked[i : i + n]) for i in range(len(masked) - n + 1)}


def test_sizes_and_columns(rows, corpus):
    assert len(rows["train"]) == 24 and len(rows["asr"]) == 12 and len(rows["test"]) == 4
    assert {tuple(sorted(r)) for r in rows["train"] + rows["asr"]} == {
        ("audio", "id", "query", "source_id", "style", "summary", "transcript")
    }
    assert {tuple(sorted(r)) for r in rows["test"]} == {("audio", "id", "query", "style", "summary", "transcript")}
    info = json.loads((corpus / "corpus.json").read_text())
    assert info["rows"] == {"train": 24, "asr": 12, "test": 4} and info["seed"] == 0


def test_every_reference_passes_its_style_check(rows):
    for row in rows["train"] + rows["test"]:
        assert row["style"] in PRESETS, row["id"]
        check = check_preset(row["summary"], row["style"])
        assert check is not None and check.ok, (row["id"], row["summary"], check)
        assert 10 <= len(re.findall(r"[\w']+", row["summary"])) <= 35, row["summary"]


def test_references_state_only_names_and_numbers_that_were_said(rows):
    for row in rows["train"] + rows["test"]:
        unsupported = unsupported_content(row["summary"], row["transcript"])
        assert unsupported.count == 0, (row["id"], unsupported.items, row["summary"])


def test_the_checks_above_catch_a_changed_name_number_or_format(rows):
    """A reference edited to say something else fails: the two tests above can fail."""
    row = next(r for r in rows["test"] + rows["train"] if r["style"] in ("bullets", "key-points"))
    added_name = row["summary"] + "\n- The deal went to Zebulon Quist."
    assert unsupported_content(added_name, row["transcript"]).names == ["Zebulon", "Quist"]
    added_number = row["summary"] + "\n- The team counted ninety nine thousand nine hundred boxes."
    assert unsupported_content(added_number, row["transcript"]).numbers
    assert not check_preset(row["summary"].replace("- ", ""), row["style"]).ok


def test_each_train_item_has_two_styles_and_a_transcription_row(rows):
    by_item: dict[str, list[dict[str, Any]]] = {}
    for row in rows["train"]:
        by_item.setdefault(row["source_id"], []).append(row)
    assert all(len({r["style"] for r in item}) == 2 for item in by_item.values())
    assert {r["source_id"] for r in rows["asr"]} == set(by_item)
    for row in rows["asr"]:
        assert row["id"] == f"{row['source_id']}#asr"
        assert row["query"] == ASR_QUERY and row["style"] == "custom" and row["summary"] == row["transcript"]


def test_ids_are_unique(rows):
    ids = [r["id"] for name in ("train", "asr", "test") for r in rows[name]]
    assert len(ids) == len(set(ids))


def test_split_is_by_content(rows, corpus):
    train_kinds = {kind(r) for r in rows["train"]}
    test_kinds = {kind(r) for r in rows["test"]}
    info = json.loads((corpus / "corpus.json").read_text())
    assert info["scenario_kinds"] == {"train": sorted(train_kinds), "test": sorted(test_kinds)}
    assert not train_kinds & test_kinds
    assert not {r["transcript"] for r in rows["train"]} & {r["transcript"] for r in rows["test"]}
    train_runs = set().union(*(template_runs(r["transcript"]) for r in rows["train"]))
    for row in rows["test"]:
        assert not template_runs(row["transcript"]) & train_runs, row["transcript"]


def test_every_wav_exists_and_is_short(rows, corpus):
    durations = []
    for row in rows["train"] + rows["test"]:
        path = corpus / row["audio"]
        assert path.is_file(), path
        durations.append(sf.info(str(path)).duration)
    assert 5.0 < min(durations) and max(durations) < 16.0  # the mini student's audio window
    info = json.loads((corpus / "corpus.json").read_text())
    assert info["max_duration_seconds"] == pytest.approx(max(durations), abs=0.01)


def test_spoken_pool_numbers_match_their_digits(monkeypatch):
    """A summary that writes a pool's number in digits is supported by the spoken transcript."""
    monkeypatch.syspath_prepend(str(MINI))
    from pools import POOLS, Choice

    numeric = {name: pool for name, pool in POOLS.items() if isinstance(pool, Choice) and pool.by_value}
    assert {"money", "big_money", "millions", "count", "century"} <= set(numeric)
    for name, pool in numeric.items():
        for value in pool.values:
            digits = f"{value / 1e6:g} million" if name == "millions" else f"{value:,}"
            assert unsupported_content(digits, f"It was {pool.say(value)}.").count == 0, (
                name,
                value,
                pool.say(value),
            )


def test_same_seed_same_corpus_and_no_silent_overwrite(corpus, tmp_path):
    again = tmp_path / "again"
    assert make_corpus(again).returncode == 0
    for name in ("train.jsonl", "asr.jsonl", "test.jsonl"):
        assert (again / name).read_text() == (corpus / name).read_text()
    refused = make_corpus(again, "--seed", "1")
    assert refused.returncode == 1 and "already exists" in refused.stderr
    assert make_corpus(again, "--seed", "1", "--overwrite").returncode == 0
    assert (again / "train.jsonl").read_text() != (corpus / "train.jsonl").read_text()
    assert not (tmp_path / "again.tmp").exists()
