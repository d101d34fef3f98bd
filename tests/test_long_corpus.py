"""recipes/mini/make_long.py (+ voices.py, natural.py, the large pools): long items in a natural
register, faithful references, splits disjoint in kinds, voices and names."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from speechsum_cli.metrics.faithfulness import unsupported_content
from speechsum_cli.metrics.style import check_preset, count_sentences
from speechsum_cli.stages.evaluate import ASR_QUERY

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "recipes" / "mini"
SCRIPT = MINI / "make_long.py"
SMALL = ["--n-train", "4", "--n-valid", "2", "--n-test", "2", "--max-seconds", "70"]
WINDOW = 16.0
EVAL_COLUMNS = ("audio", "id", "query", "style", "summary", "transcript", "voice")
TRAIN_COLUMNS = ("audio", "id", "query", "source_id", "style", "summary", "transcript", "voice")
SYNTHS = ("espeak-ng", "flite", "text2wave")


def make_long(out: Path, *extra: str, env: dict[str, str] | None = None):
    missing = [b for b in SYNTHS if shutil.which(b) is None]
    if missing and env is None:
        pytest.fail(
            f"{', '.join(missing)} missing: apt-get install -y espeak-ng flite festival "
            "festvox-us-slt-hts festvox-kallpc16k (see .ci/run)"
        )
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *SMALL, *extra],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def mods(request):
    """The recipe's modules (they import each other from their own folder)."""
    sys.path.insert(0, str(MINI))
    request.addfinalizer(lambda: sys.path.remove(str(MINI)))
    import make_long
    import natural
    import pools
    import voices

    return make_long, natural, pools, voices


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("long") / "corpus"
    run = make_long(out)
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def rows(corpus) -> dict[str, list[dict[str, Any]]]:
    return {n: read_jsonl(corpus / f"{n}.jsonl") for n in ("train", "asr", "valid", "test")}


@pytest.fixture(scope="module")
def info(corpus) -> dict[str, Any]:
    return json.loads((corpus / "corpus.json").read_text())


@pytest.fixture(scope="module")
def drafts(mods):
    """Drafted items (references checked, nothing rendered): 40 per split at default rates."""
    ml = mods[0]
    cfg = ml.LongConfig({"train": 40, "valid": 40, "test": 40})
    return {
        split: [ml.draft_long(split, i, cfg, 0, ml.SEGMENTS) for i in range(40)] for split in ("train", "valid", "test")
    }


# --- the written corpus ------------------------------------------------------------------------


def test_files_columns_and_manifest(rows, info):
    assert len(rows["train"]) == 8 and len(rows["asr"]) == 4
    assert len(rows["valid"]) == 2 and len(rows["test"]) == 2
    assert {tuple(sorted(r)) for r in rows["train"] + rows["asr"]} == {TRAIN_COLUMNS}
    assert {tuple(sorted(r)) for r in rows["valid"] + rows["test"]} == {EVAL_COLUMNS}
    for row in rows["asr"]:
        assert row["id"] == f"{row['source_id']}#asr" and row["query"] == ASR_QUERY
        assert row["style"] == "custom" and row["summary"] == row["transcript"]
    by_item = Counter(r["source_id"] for r in rows["train"])
    assert set(by_item.values()) == {2}
    assert all(len({r["style"] for r in rows["train"] if r["source_id"] == i}) == 2 for i in by_item)
    assert info["rows"] == {"train": 8, "asr": 4, "valid": 2, "test": 2}
    assert info["items"] == {"train": 4, "valid": 2, "test": 2} and info["seed"] == 0
    assert info["pools"]["heldout"]["first_names"] >= 50
    assert set(info["disfluencies"]["train"]) >= {"filler", "transition", "opening", "closing"}


def test_every_item_is_longer_than_the_window_and_its_duration_is_the_wav(rows, corpus, info):
    durations = {}
    for row in rows["train"] + rows["valid"] + rows["test"]:
        durations[row["audio"]] = sf.info(str(corpus / row["audio"])).duration
    assert all(WINDOW < d and 20.0 <= d <= 70.0 for d in durations.values()), durations
    assert sorted(p.name for p in (corpus / "audio").iterdir()) == sorted(
        Path(a).name for a in durations
    )  # no wav of a redrafted item is left behind
    assert info["durations"]["all"]["min"] == pytest.approx(min(durations.values()), abs=0.01)
    assert info["durations"]["all"]["max"] == pytest.approx(max(durations.values()), abs=0.01)
    assert info["audio_seconds"]["total"] == pytest.approx(sum(durations.values()), abs=0.2)


def test_written_references_pass_their_style_and_state_only_what_was_said(rows):
    for row in rows["train"] + rows["valid"] + rows["test"]:
        check = check_preset(row["summary"], row["style"])
        assert check is not None and check.ok, (row["id"], row["summary"], check)
        assert unsupported_content(row["summary"], row["transcript"]).count == 0, row["id"]


def test_voices_per_split_are_their_families(rows, info):
    def synths(split: str) -> set[str]:
        return {r["voice"].split(":")[0] for r in rows[split]}

    assert synths("train") <= {"espeak-ng", "flite"} and synths("valid") == {"festival"}
    assert {r["voice"] for r in rows["test"]} == {"espeak-ng:default,wpm=165"}
    assert all("tempo=" in r["voice"] or "gain=" in r["voice"] for r in rows["train"])
    assert set(info["synths"]["valid"]) == {"festival"}


def test_same_seed_same_corpus_and_no_silent_overwrite(corpus, tmp_path):
    again = tmp_path / "again"
    assert make_long(again).returncode == 0
    for name in ("train.jsonl", "asr.jsonl", "valid.jsonl", "test.jsonl"):
        assert (again / name).read_text() == (corpus / name).read_text()
    for wav in (corpus / "audio").iterdir():  # noise and speed are seeded too
        assert (again / "audio" / wav.name).read_bytes() == wav.read_bytes()
    refused = make_long(again, "--seed", "1")
    assert refused.returncode == 1 and "already exists" in refused.stderr
    assert not (tmp_path / "again.tmp").exists()


def test_bad_bounds_are_refused(tmp_path):
    run = make_long(tmp_path / "x", "--min-seconds", "12")
    assert run.returncode == 2 and "more than 16" in run.stderr


def test_a_missing_synthesizer_names_its_package(tmp_path):
    """PATH without flite and festival: the run stops before rendering, naming the packages."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("espeak-ng",):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {**os.environ, "PATH": str(bin_dir)}
    run = make_long(tmp_path / "out", env=env)
    assert run.returncode == 1, run.stderr
    assert "Error:" in run.stderr
    assert "apt-get install flite" in run.stderr and "apt-get install festival" in run.stderr
    assert not (tmp_path / "out").exists()


# --- drafts: references, register, splits ------------------------------------------------------


def test_every_drafted_reference_is_in_style_faithful_and_one_tldr_sentence(drafts):
    for item in (i for items in drafts.values() for i in items):
        assert set(item.references) >= {"bullets", "tldr", "paragraph", "key-points", "chapters"}
        assert count_sentences(item.references["tldr"]) == 1, item.references["tldr"]
        assert len(item.references["bullets"].splitlines()) == len(item.segments)
        for style, summary in item.references.items():
            assert check_preset(summary, style).ok, (item.id, style, summary)
            assert unsupported_content(summary, item.spoken.text).count == 0
            assert unsupported_content(summary, item.clean).count == 0  # no slip is stated


def test_a_reference_that_breaks_the_contract_stops_the_run(mods, drafts):
    ml = mods[0]
    item = drafts["train"][0]
    from dataclasses import replace

    too_short = replace(item, references={**item.references, "paragraph": "Too short."})
    with pytest.raises(ml.TemplateError, match=item.segments[0].scenario.kind):
        ml.check_references(too_short)
    invented = replace(item, references={**item.references, "tldr": "Zebulon Quist said yes."})
    with pytest.raises(ml.TemplateError, match="unsupported"):
        ml.check_references(invented)


def test_valid_and_test_kinds_and_names_are_unheard_in_training(mods, drafts):
    _, _, pools, _ = mods
    kinds = {s: {seg.scenario.kind for i in items for seg in i.segments} for s, items in drafts.items()}
    assert not kinds["valid"] & kinds["train"] and not kinds["test"] & kinds["train"]
    assert not kinds["valid"] & kinds["test"]
    train = pools.large_pools("train")
    heard = set(train["person"].first) | set(train["person"].last) | set(pools.mini_words())
    heard_cities = set(train["city"].values)
    for split in ("valid", "test"):
        for item in drafts[split]:
            for seg in item.segments:
                for slot, pool in seg.scenario.slots.items():
                    value = seg.values[slot]
                    if pool == "person":
                        assert value.first not in heard and value.last not in heard, value
                    if pool == "city":
                        assert value not in heard_cities, value


def test_large_pools_are_large_disjoint_and_speakable(mods):
    _, _, pools, _ = mods
    assert len(set(pools.LARGE_FIRST_NAMES)) >= 300 and len(set(pools.LARGE_SURNAMES)) >= 300
    assert len(set(pools.LARGE_CITIES)) >= 150
    train, held = pools.large_pools("train"), pools.large_pools("heldout")
    for name in ("city", "product", "company", "client"):
        assert len(held[name].values) >= 50 and not set(train[name].values) & set(held[name].values)

    def words(pool):
        return {w for v in pool.values for w in str(v).split()}

    assert not words(train["company"]) & words(held["company"]) - {
        "Labs",
        "Systems",
        "Group",
        "Partners",
        "Works",
        "Analytics",
        "Networks",
    }
    people = [*pools.LARGE_FIRST_NAMES, *pools.LARGE_SURNAMES]
    assert not set(pools.LARGE_FIRST_NAMES) & set(pools.LARGE_SURNAMES)
    assert all(re.fullmatch(r"[A-Z][a-z]+", n) for n in people), "ASCII names espeak can say"
    assert set(pools.POOLS["person"].first) <= set(train["person"].first)  # the mini pools' own


def test_repairs_say_the_true_value_last_and_references_state_only_it(mods):
    ml, natural, _, _ = mods
    cfg = ml.LongConfig({"train": 1}, rates=natural.Rates(repair=1.0))
    repairs = 0
    for i in range(30):
        item = ml.draft_long("train", i, cfg, 0, ml.SEGMENTS)
        refs = "\n".join(item.references.values())
        for r in item.spoken.repairs:
            repairs += 1
            assert re.search(rf"{re.escape(r.said)},[^.]*?\b{re.escape(r.value)}\b", item.spoken.text), r
            assert re.search(rf"\b{re.escape(r.value)}\b", refs), (r, refs)
            assert unsupported_content(f"It was {r.said}.", refs).count, (r, refs)
    assert repairs >= 30  # about one per segment


HIGH = {"filler": 0.3, "repetition": 0.5, "false_start": 0.5, "repair": 1.0, "aside": 0.5}


def test_no_disfluency_splits_a_name_or_a_number_phrase(mods):
    ml, natural, _, _ = mods
    cfg = ml.LongConfig({"train": 1}, rates=natural.Rates(**HIGH))
    for i in range(30):
        item = ml.draft_long("train", i, cfg, 0, ml.SEGMENTS)
        text = item.spoken.text
        for seg in item.segments:
            spans = natural.fill(seg.phrasing, seg.values)
            for k, span in enumerate(spans):
                if span.slot is None:
                    continue
                assert span.text in text, (span.text, text)
                if not span.tail and k + 1 < len(spans):  # "forty thousand dollars"
                    joined = f"{span.text} {spans[k + 1].text}"
                    assert re.search(re.escape(joined), text, re.IGNORECASE), (joined, text)


def rate_of(natural, kind: str, rate: float, setting: str = "meeting") -> tuple[int, int, str]:
    """Speak 60 segments with only ``kind`` on at ``rate``: (events, opportunities, text)."""
    from pools import draw_slots
    from scenarios import SCENARIOS

    rng = random.Random(7)
    parts, clean = [], []
    for k in range(60):
        sc = [s for s in SCENARIOS if s.split == "train"][k % 19]
        values = draw_slots(sc.slots, sc.ascending, rng)
        text = sc.transcripts[k % 3].format(**values)
        clean.append(text)
        parts.append(natural.Part(natural.fill(sc.transcripts[k % 3], values)))
    off = dict.fromkeys(("filler", "repetition", "false_start", "repair", "aside"), 0.0)
    rates = natural.Rates(**{**off, kind: rate})
    spoken = natural.speak(parts, setting, rng, rates)
    words = " ".join(clean).split()
    sentences = sum(len(re.findall(r"[.!?](?:\s|$)", t)) for t in clean)
    boundaries = sentences + len(parts) - 1 - 1  # the transitions are sentences too
    opportunities = {
        "filler": len(words),
        "false_start": sentences,
        "aside": boundaries,
        "repetition": sum(w.lower() in natural.REPEATABLE for w in words),
    }[kind]
    events = spoken.counts[kind.replace("_", "-")]
    return events, opportunities, spoken.text


@pytest.mark.parametrize(
    "kind,rate,pattern",
    [
        ("filler", 0.1, r"\b(?:um|uh|you know|I mean|like|so|okay),"),
        ("repetition", 0.3, r"\b([\w']+), \1\b"),
        ("false_start", 0.3, None),
        ("aside", 0.3, None),
    ],
)
def test_each_disfluency_happens_at_its_rate(mods, kind, rate, pattern):
    natural = mods[1]
    events, opportunities, text = rate_of(natural, kind, rate)
    assert 0.7 * rate <= events / opportunities <= 1.2 * rate, (events, opportunities)
    if kind == "aside":
        said = sum(text.count(a) for a in natural.ASIDES)
        assert said == events
    if pattern is not None:
        found = len(re.findall(pattern, text, re.IGNORECASE))
        assert found >= events * 0.9, (found, events)
    zero = rate_of(natural, kind, 0.0)
    assert zero[0] == 0


def test_transitions_join_every_segment_and_the_corpus_has_every_type(drafts):
    for item in drafts["train"]:
        assert item.spoken.counts["transition"] == len(item.segments) - 1
    totals = Counter()
    for items in drafts.values():
        for item in items:
            totals.update(item.spoken.counts)
    assert all(totals[t] > 0 for t in ("filler", "repetition", "false-start", "repair", "aside"))


def test_segment_counts_spread_and_estimates_fit_the_bounds(mods, drafts):
    ml = mods[0]
    counts = Counter(len(i.segments) for items in drafts.values() for i in items)
    assert set(counts) == {2, 3, 4, 5, 6} and min(counts.values()) >= 12, counts
    estimates = [ml.estimate_seconds(i.spoken.text, i.voice) for i in drafts["train"]]
    assert min(estimates) > WINDOW and max(estimates) < ml.MAX_SECONDS


# --- voices --------------------------------------------------------------------------------------

TEXT = "Priya Shah moved the launch to March fourteenth. The budget is forty thousand dollars."


@pytest.mark.parametrize(
    "synth,name,speed",
    [
        ("espeak-ng", "default", 165),
        ("espeak-ng", "en-us+f2", 150),
        ("flite", "awb", 1.0),
        ("flite", "rms", 1.1),
        ("festival", "cmu_us_slt_arctic_hts", 1.0),
        ("festival", "kal_diphone", 1.2),
    ],
)
def test_each_synthesizer_speaks_for_a_plausible_time(mods, tmp_path, synth, name, speed):
    voices = mods[3]
    if shutil.which(voices.BINARIES[synth]) is None:
        pytest.fail(f"{synth} is not installed: apt-get install {voices.PACKAGES[synth]}")
    kw = {"wpm": speed} if synth == "espeak-ng" else {"stretch": speed}
    voice = voices.Voice(synth, name, **kw)
    seconds = voices.render(TEXT, voice, tmp_path / "x.wav")
    audio, _ = sf.read(tmp_path / "x.wav")
    assert audio.ndim == 1 and np.sqrt(np.mean(audio**2)) > 0.01  # speech, not silence
    expected = len(TEXT.split()) * 60 / voice.words_per_minute
    assert 0.6 * expected < seconds < 1.6 * expected, (seconds, expected)


def test_stretch_slows_festival_and_flite(mods, tmp_path):
    voices = mods[3]
    for synth, name in (("festival", "cmu_us_slt_arctic_hts"), ("flite", "awb")):
        fast = voices.render(TEXT, voices.Voice(synth, name, stretch=0.8), tmp_path / "a.wav")
        slow = voices.render(TEXT, voices.Voice(synth, name, stretch=1.25), tmp_path / "b.wav")
        assert slow > 1.3 * fast, (synth, fast, slow)


def test_long_text_is_spoken_in_sentence_chunks(mods, tmp_path):
    voices = mods[3]
    text = " ".join([TEXT] * 12)  # 168 words: two flite calls
    pieces = voices.chunks(text, voices.CHUNK_WORDS)
    assert len(pieces) == 2 and " ".join(pieces) == text
    assert all(len(p.split()) <= voices.CHUNK_WORDS and p.endswith(".") for p in pieces)
    whole = voices.render(text, voices.Voice("flite", "awb", stretch=1.0), tmp_path / "w.wav")
    one = voices.render(TEXT, voices.Voice("flite", "awb", stretch=1.0), tmp_path / "o.wav")
    assert 10 * one < whole < 14 * one


def test_perturbation_changes_the_wave_keeps_the_tempo_and_hits_the_snr(mods, tmp_path):
    voices = mods[3]
    clean = voices.Voice("espeak-ng", "en-us", wpm=160)
    p = voices.Perturbation(tempo=1.1, snr_db=15.0, noise="pink", gain_db=-3.0, seed=3)
    noisy = voices.Voice("espeak-ng", "en-us", wpm=160, perturbation=p)
    a = voices.render(TEXT, clean, tmp_path / "a.wav")
    b = voices.render(TEXT, noisy, tmp_path / "b.wav")
    assert b == pytest.approx(a / 1.1, rel=0.01)
    x, _ = sf.read(tmp_path / "a.wav", dtype="float32")
    y, _ = sf.read(tmp_path / "b.wav", dtype="float32")
    speech = voices.change_speed(x, 1.1) * np.float32(10 ** (-3 / 20))
    noise = y[: len(speech)] - speech[: len(y)]
    snr = 10 * np.log10(voices.speech_power(speech) / np.mean(noise**2))
    assert snr == pytest.approx(15.0, abs=1.0)
    again = voices.render(TEXT, noisy, tmp_path / "c.wav")
    assert again == b and (tmp_path / "c.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_a_missing_synthesizer_or_voice_is_a_named_error(mods, tmp_path, monkeypatch):
    voices = mods[3]
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(voices.SynthError, match="apt-get install flite"):
        voices.render(TEXT, voices.Voice("flite", "awb", stretch=1.0), tmp_path / "x.wav")
    assert "apt-get install festival" in " ".join(voices.problems(["festival:kal_diphone"]))
    monkeypatch.undo()
    monkeypatch.setitem(voices.FESTIVAL_VOICES, "nosuch_voice", ("festvox-nosuch", "diphone"))
    with pytest.raises(voices.SynthError, match="apt-get install festvox-nosuch"):
        voices.render(TEXT, voices.Voice("festival", "nosuch_voice", stretch=1.0), tmp_path / "y.wav")


def test_train_family_never_uses_the_valid_speakers(mods):
    voices = mods[3]
    rng = random.Random(0)
    drawn = [voices.draw_voice("train", rng) for _ in range(300)]
    assert {v.synth for v in drawn} == {"espeak-ng", "flite"}
    assert {v.name for v in drawn if v.synth == "flite"} == {"awb", "rms"}
    assert all(not v.perturbation.clean for v in drawn)
    assert {voices.draw_voice("valid", rng).name for _ in range(50)} == set(voices.FESTIVAL_VOICES)


# --- make_hearing's train-family option ----------------------------------------------------------


def test_hearing_corpus_can_speak_with_the_train_family_and_large_names(mods, tmp_path):
    _, _, pools, _ = mods
    out = tmp_path / "hearing"
    run = subprocess.run(
        [
            sys.executable,
            str(MINI / "make_hearing.py"),
            str(out),
            "--hours",
            "0.02",
            "--heldout",
            "2",
            "--max-seconds",
            "12",
            "--pools-share",
            "0.6",
            "--voice-family",
            "train",
            "--name-pool",
            "large",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    clips = read_jsonl(out / "train.jsonl") + read_jsonl(out / "heldout.jsonl")
    assert all(re.match(r"(espeak-ng|flite):", c["voice"]) for c in clips)
    for clip in clips:
        assert sf.info(str(out / clip["audio"])).duration <= 12.0
    held = pools.large_pools("heldout")
    unheard = set(held["person"].first) | set(held["person"].last)
    said = {w for c in clips if c["source"] == "pools" for w in re.findall(r"[A-Z]\w+", c["transcript"])}
    assert said and not said & unheard
    train = pools.large_pools("train")
    assert said & (set(train["person"].first) - set(pools.POOLS["person"].first))
    info = json.loads((out / "hearing.json").read_text())
    assert info["options"]["voice_family"] == "train" and info["options"]["name_pool"] == "large"
